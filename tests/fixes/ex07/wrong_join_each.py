"""Wrong: each worker is joined right after it starts, so the jobs run one at a time."""
import threading
import time


def heartbeat(path, interval=0.5):
    """Forever: append one line to `path`, then sleep `interval` seconds."""
    while True:
        with open(path, "a") as f:
            f.write(f"alive at {time.time():.3f}\n")
        time.sleep(interval)


def worker(n, seconds, results):
    """Job n: wait `seconds` (a slow download), then store its result (given)."""
    time.sleep(seconds)
    results[n] = n * n


def main(path="heartbeat.log", durations=(1.0, 2.0, 0.5, 1.5)):
    """Run one worker thread per job while the heartbeat thread writes; return {n: n * n} for every job."""
    results = {}
    beat = threading.Thread(target=heartbeat, args=(path,), daemon=True)  # stopped when the program ends
    beat.start()
    workers = [threading.Thread(target=worker, args=(n, seconds, results)) for n, seconds in enumerate(durations)]
    for t in workers:
        t.start()
        t.join()
    print(f"main: {len(results)} of {len(durations)} results")
    return results


if __name__ == "__main__":
    print(main())
