"""Exercise 3 fix: Wrong: no daemon; main waits a little for the worker with join(timeout) and then carries on, so Python still joins it at exit."""
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


def main(path="heartbeat.log", seconds=0.5):
    """Run heartbeat in a worker process while do_work(seconds) runs; the program ends when the work ends."""
    worker = Process(target=heartbeat, args=(path,))
    worker.start()
    do_work(seconds)
    worker.join(timeout=0.2)  # the heartbeat never ends: this only delays the end
    print("main: finished")


if __name__ == "__main__":
    main()
