"""Exercise 2: sentinels for the producer-consumer model.

Producers put work items on one shared ``multiprocessing.Queue``; consumers take them off and handle each
with ``consume``. The queue decouples the two sides: neither needs to know how fast the other is.

Run it: ``python exercises/ex02_sentinels.py``. Every item is consumed, and then the program hangs. The
consumers sit in ``q.get()`` forever: nobody tells them that no more work is coming.

Your task: after every producer has finished (joined), put one sentinel per consumer on the queue; a
consumer that takes a sentinel returns. Items can be any picklable value, ``0``, ``""`` and ``False``
included, so pick a sentinel that no item can be mistaken for, and compare it by value: what comes out of
a queue is a pickled copy, never the same object (an ``object()`` compared with ``is`` never matches).
Do not stop a consumer because ``get(timeout=...)`` found the queue empty for a while: a producer can
simply be slow.
"""
import random
import time
from multiprocessing import Process, Queue


def producer(q, items):
    """Put every item of `items` on `q`."""
    for item in items:
        time.sleep(random.uniform(0, 0.2))  # making an item takes a while
        q.put(item)


def consume(item):
    """Handle one item (given)."""
    time.sleep(random.uniform(0, 0.1))
    print(f"consumed {item!r}")


def consumer(q):
    """Take items off `q` and consume each one, until a sentinel arrives; then return."""
    while True:
        item = q.get()
        # TODO: return when the item is a sentinel
        consume(item)


def main(batches, consumers=2):
    """One producer per batch (a list of items) and `consumers` consumers; return when all work is done."""
    q = Queue()
    producers = [Process(target=producer, args=(q, batch)) for batch in batches]
    workers = [Process(target=consumer, args=(q,)) for _ in range(consumers)]
    for p in producers + workers:
        p.start()
    for p in producers:
        p.join()
    # TODO: no more work is coming: tell every consumer so
    for w in workers:
        w.join()


if __name__ == "__main__":
    main([[1, 2, 3], ["a", "b"], [0, "", False]], consumers=2)
    print("all work done")
