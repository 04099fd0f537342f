"""Exercise 3 fix: Correct: a daemon worker started from an explicit spawn context (a fresh interpreter)."""
import time
from multiprocessing import Process, get_context


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
    worker = get_context("spawn").Process(target=heartbeat, args=(path,), daemon=True)
    worker.start()
    do_work(seconds)
    print("main: finished")


if __name__ == "__main__":
    main()
