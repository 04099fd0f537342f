"""Exercise 7: threads: join the workers, not the heartbeat.

This time the program uses threads instead of processes. Threads share their process's memory, so the
worker threads can put their results straight into one dict. Each job waits `seconds` (a download: I/O-bound
work, which is what threads are good at) and its result is n * n. While the jobs run, a heartbeat thread
appends a line to a log file every `interval` seconds, so that a monitor can see the program is alive; once
the jobs are done, the heartbeat is pointless.

Run it: ``python exercises/ex07_threads_join.py``. It prints "main: 0 of 4 results", and then the program
never ends. Two bugs hide in main():
- it reads the results as soon as the workers are started, before they have finished: the main thread must
  wait for each worker with join();
- the heartbeat loops forever, and the main thread waits for every non-daemon thread before the program
  ends: the heartbeat must be a daemon thread (``daemon=True``, set before ``start()``), which is stopped
  when every non-daemon thread has ended. Never join the heartbeat: it never ends.

Your task: fix main(). Keep the workers running at the same time (start them all, then join them all), and
keep the names and parameters, the grader calls them:
- heartbeat(path, interval): forever, append one line to `path`, then sleep `interval` seconds;
- worker(n, seconds, results): job n; sets results[n] = n * n;
- main(path, durations): runs one worker per entry of `durations` (job n waits durations[n] seconds) while
  the heartbeat writes to `path`, and returns the results, a dict {n: n * n} for every job.
"""
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
    for t in workers:  # the workers only: the heartbeat never ends
        t.join()
    print(f"main: {len(results)} of {len(durations)} results")
    return results


if __name__ == "__main__":
    print(main())
