"""Exercise 3: a daemon heartbeat worker.

While the program does its main job (``do_work``), a background worker process appends a line to a log
file every ``interval`` seconds, so that a monitor can see the program is alive. Once the work is done,
the heartbeat is pointless.

Run it: ``python exercises/ex03_daemon_worker.py``. The work ends ("work done"), and the program never
exits: when the main process's code ends, Python joins every non-daemonic child, and the heartbeat loops
forever.

Your task: make the worker a daemon process, from its start (``daemon`` must be set before ``start()``,
or passed to ``Process``). When the main process's code ends, normally or with an exception, its daemonic
children are terminated, and the program ends with it.
"""
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
    worker = Process(target=heartbeat, args=(path,), daemon=True)  # terminated when main's code ends
    worker.start()
    do_work(seconds)
    print("main: finished")


if __name__ == "__main__":
    main()
