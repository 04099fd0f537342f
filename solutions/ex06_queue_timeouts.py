"""Exercise 6: bounded queues with timeouts.

Producer processes hand jobs to consumer processes through a bounded queue, ``Queue(maxsize)``: when the
consumers fall behind, ``put`` waits for room, so the queue never holds more than ``maxsize`` jobs; when
the producers fall behind, ``get`` waits for a job. A job is a number: the seconds it takes to do.

Nobody tells the other side when it is done or gone: a consumer leaves after a shift of ``shift`` jobs,
and a producer leaves when its batch is done. The rule of this program is that a side that waits
``patience`` seconds without progress takes the other side to be gone:
- a producer waits at most ``patience`` seconds for room for a job; when none comes, the consumers are
  gone: it stops, leaving the rest of its batch undelivered;
- a consumer waits at most ``patience`` seconds for a job; when none comes, the producers are done (or
  gone): it returns.
Until then, the other side is only slow, and no side may give up on it.

Run it: ``python exercises/ex06_queue_timeouts.py``. The consumers do their shifts and leave, and the
program hangs: the producer waits in ``put()`` for room that never comes. A ``put`` on a full queue, like a
``get`` on an empty one, blocks forever unless it is given a timeout.

Your task: use ``q.put(job, timeout=patience)`` and ``q.get(timeout=patience)``. With a timeout they raise
``queue.Full`` and ``queue.Empty`` (from the ``queue`` module) instead of waiting forever: catch exactly
those, and stop as the rule says. No job may be lost or done twice.

The grader calls these functions; keep their names and parameters:
- ``do_job(job)`` (given): do one job;
- ``producer(q, jobs, patience)``: put every job of ``jobs`` on ``q``, in order, as the rule says;
- ``consumer(q, patience, shift)``: take jobs off ``q`` and do each one with ``do_job``; return after
  ``shift`` jobs (``None``: no limit) or, as the rule says, when no job comes;
- ``main(batches, consumers, maxsize, patience, shift)``: one producer per batch and ``consumers``
  consumers on one ``Queue(maxsize)``; return when every process has ended.
"""
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
        try:
            job = q.get(timeout=patience)
        except queue.Empty:  # no job for `patience` seconds: the producers are done
            return
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
