"""Exercise 5: a shared counter in a Manager.

A shop sells the last items of a stock. Processes do not share memory, so the stock lives in a Manager: a
server process that holds a dict, ``counter``, which every worker reaches through a proxy. Each worker
serves a few customers, and each sale takes one item: ``decrement`` reads ``counter["value"]`` and writes
it back minus one.

Run it: ``python exercises/ex05_manager_counter.py``. Four workers each sell five items, so 20 of the 40
items must be gone, yet the final value is well above 20: sales are lost. Reading the proxy is one
request to the Manager's server, and writing it back is another one. In between, another worker can read
the same value, and its write then overwrites the first: a lost update, even though the dict itself is
process-safe.

Your task: make the read-modify-write of ``decrement`` a critical section, with the lock ``main`` creates
and passes to every worker: one lock, shared by all the processes. The workers must still run at the same
time (joining each worker right after starting it is not a fix).

The grader calls these functions; keep their names and parameters:
- ``decrement(counter, lock)``: take one from ``counter["value"]`` and return the value it wrote;
- ``worker(counter, lock, times)``: make ``times`` sales, each with ``decrement``;
- ``main(start, workers, times)``: a counter starting at ``start``, ``workers`` worker processes making
  ``times`` sales each, started together; return the counter's final value.
"""
import random
import time
from multiprocessing import Manager, Process


def decrement(counter, lock):
    """Take one from counter["value"] and return the value written."""
    with lock:  # the read and the write form one critical section
        value = counter["value"]  # one request to the Manager's server process...
        time.sleep(random.uniform(0, 0.1))  # the till takes a moment
        counter["value"] = value - 1  # ...and another one
    return value - 1


def worker(counter, lock, times):
    """Serve `times` customers, one sale each."""
    for _ in range(times):
        time.sleep(random.uniform(0, 0.5))  # serving a customer takes a while
        decrement(counter, lock)


def main(start=40, workers=4, times=5):
    """Let `workers` workers make `times` sales each from a stock of `start`; return what is left."""
    with Manager() as manager:
        counter = manager.dict(value=start)
        lock = manager.Lock()
        processes = [Process(target=worker, args=(counter, lock, times)) for _ in range(workers)]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        return counter["value"]


if __name__ == "__main__":
    left = main(40, workers=4, times=5)
    print(f"items left: {left} (expected 20)")
