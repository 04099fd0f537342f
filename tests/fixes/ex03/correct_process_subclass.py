"""Exercise 3 fix: Correct: a Process subclass that makes itself a daemon in __init__ and runs heartbeat in run()."""
import time
from multiprocessing import Process


def heartbeat(path, interval=0.05):
    """Forever: append one line to `path`, then sleep `interval` seconds."""
    while True:
        with open(path, "a") as f:
            f.write(f"alive at {time.time():.3f}\n")
        time.sleep(interval)


def do_work(seconds):
    """The program's main job (given)."""
    print("working...")
    time.sleep(seconds)
    print("work done")


class HeartbeatProcess(Process):
    """A worker process that runs heartbeat(path); a daemon from its creation."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.daemon = True

    def run(self):
        heartbeat(self.path)


def main(path="heartbeat.log", seconds=0.5):
    """Run heartbeat in a worker process while do_work(seconds) runs; the program ends when the work ends."""
    worker = HeartbeatProcess(path)
    worker.start()
    do_work(seconds)
    print("main: finished")


if __name__ == "__main__":
    main()
