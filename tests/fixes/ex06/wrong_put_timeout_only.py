"""Wrong: only put() has a timeout; get() still blocks forever once the producers are done."""
import queue
import random
import time
from multiprocessing import Process, Queue


def do_job(job):
    """Do one job (given): a job is the number of seconds it takes."""
    time.sleep(job)
    print(f"did a job of {job} s")


def producer(q, jobs, patience):
    """Put every job of `jobs` on `q`; stop when there has been no room for `patience` seconds."""
    for index, job in enumerate(jobs):
        time.sleep(random.uniform(0.2, 0.5))  # preparing a job takes a while
        try:
            q.put(job, timeout=patience)
        except queue.Full:  # no room for `patience` seconds: the consumers are gone
            print(f"producer: no consumer left, {len(jobs) - index} job(s) not delivered")
            return


def consumer(q, patience, shift=None):
    """Do jobs from `q`: leave after `shift` jobs, or when no job has come for `patience` seconds."""
    done = 0
    while shift is None or done < shift:
        job = q.get()
        do_job(job)
        done += 1


def main(batches, consumers=2, maxsize=2, patience=2.0, shift=None):
    """One producer per batch and `consumers` consumers on one queue of `maxsize` jobs; wait for them all."""
    q = Queue(maxsize)
    producers = [Process(target=producer, args=(q, jobs, patience)) for jobs in batches]
    workers = [Process(target=consumer, args=(q, patience, shift)) for _ in range(consumers)]
    for p in producers + workers:
        p.start()
    for p in producers + workers:
        p.join()


if __name__ == "__main__":
    # Two consumers, a shift of 3 jobs each: 6 of the 10 jobs get done, 2 wait in the queue, and then
    # nobody makes room for the last 2.
    main([[0.5, 1.0, 0.2, 0.8, 0.3, 0.6, 0.4, 0.7, 0.9, 0.1]], consumers=2, maxsize=2, patience=2.0, shift=3)
    print("main: every process has ended")
