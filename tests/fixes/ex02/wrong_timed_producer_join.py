"""Wrong: main() gives each producer p.join(0.1) and puts the sentinels whether or not it ended: a slow producer's items come after them."""
import random
import time
from multiprocessing import Process, Queue

SENTINEL = "__no more work__"


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
        if isinstance(item, str) and item == SENTINEL:
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
        p.join(0.1)  # long enough on this machine
    for _ in workers:
        q.put(SENTINEL)
    for w in workers:
        w.join()


if __name__ == "__main__":
    main([[1, 2, 3], ["a", "b"], [0, "", False]], consumers=2)
    print("all work done")
