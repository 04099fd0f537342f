"""Exercise 3 fix: Wrong: the daemon worker is started only after do_work(), so no heartbeat is written while the work runs."""
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
    worker = Process(target=heartbeat, args=(path,), daemon=True)
    do_work(seconds)
    worker.start()  # too late: the work is already done
    print("main: finished")


if __name__ == "__main__":
    main()
