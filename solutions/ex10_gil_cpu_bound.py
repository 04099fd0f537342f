"""Exercise 10: CPU-bound work: processes, not threads.

``main`` counts the primes below ``limit``. ``split`` cuts the numbers ``0 <= n < limit`` into ``workers``
ranges, and each range is counted by ``count_primes``: pure Python computation, CPU-bound, with no waiting
at all. To count the ranges at the same time, ``main`` gives each one to a thread.

Run it: ``python exercises/ex10_gil_cpu_bound.py``. The count is right, but it takes as long as counting
everything in one thread: in CPython the GIL (global interpreter lock) lets only one thread of a process
run Python code at a time. Threads help with I/O-bound work (waiting for files, the network, sleep), not
with computation.

Your task: split the work across processes, so that the ranges are counted at the same time by different
processes (``workers`` of them): a ``multiprocessing.Pool``, or ``Process`` objects and a ``Queue``. Processes
do not share memory: a list a child appends to is the child's own copy, so the counts must come back to
``main`` through IPC (a Pool's results, a queue, a Manager). The total must stay exact.
The contract, which the grader calls: ``count_primes(start, stop)``, ``split(limit, parts)`` and
``main(limit, workers)``, which returns the number of primes below ``limit``.
"""
import time
from multiprocessing import Pool


def count_primes(start, stop):
    """How many primes n there are with start <= n < stop (given: CPU-bound, no waiting)."""
    count = 0
    for n in range(max(start, 2), stop):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


def split(limit, parts):
    """`parts` ranges (start, stop) that together cover 0 <= n < limit, each number once (given)."""
    size, extra = divmod(limit, parts)
    ranges, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def main(limit=1_000_000, workers=4):
    """The number of primes below `limit`, counted in `workers` parts at the same time."""
    with Pool(workers) as pool:  # `workers` processes, each with its own interpreter and its own GIL
        counts = pool.starmap(count_primes, split(limit, workers))  # the counts come back pickled
    return sum(counts)


if __name__ == "__main__":
    began = time.perf_counter()
    total = main()
    print(f"{total} primes below 1000000, counted in {time.perf_counter() - began:.2f} s")
