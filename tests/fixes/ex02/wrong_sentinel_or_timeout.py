"""Wrong: sentinels, but a consumer also returns when get(timeout=5) raises queue.Empty: behind a producer slower than 5 s it
returns early, and the items still to come are lost."""
import queue
import random
import time
from multiprocessing import Process, Queue

SENTINEL = None


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
        try:
            item = q.get(timeout=5)
        except queue.Empty:
            return  # "nothing for 5 s: the producers must be done"
        if item is None:
            return
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
    for _ in workers:
        q.put(SENTINEL)
    for w in workers:
        w.join()


if __name__ == "__main__":
    main([[1, 2, 3], ["a", "b"], [0, "", False]], consumers=2)
    print("all work done")
