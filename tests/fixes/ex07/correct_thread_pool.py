"""Correct: the jobs run in a ThreadPoolExecutor, which waits for them when its `with` block ends."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor


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
    with ThreadPoolExecutor(max_workers=len(durations)) as pool:
        for n, seconds in enumerate(durations):
            pool.submit(worker, n, seconds, results)
    print(f"main: {len(results)} of {len(durations)} results")
    return results


if __name__ == "__main__":
    print(main())
