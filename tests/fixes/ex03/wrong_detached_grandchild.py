"""Exercise 3 fix: Wrong: a daemon worker that detaches the real heartbeat into a grandchild (os.fork() + os.setsid()) and returns."""
import os
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


def detach_heartbeat(path):
    """Run heartbeat in a detached grandchild, so that it survives this worker."""
    if os.fork() == 0:
        os.setsid()
        try:
            heartbeat(path)
        finally:
            os._exit(0)


def main(path="heartbeat.log", seconds=0.5):
    """Run heartbeat in a worker process while do_work(seconds) runs; the program ends when the work ends."""
    worker = Process(target=detach_heartbeat, args=(path,), daemon=True)
    worker.start()
    do_work(seconds)
    print("main: finished")


if __name__ == "__main__":
    main()
