"""Wrong: the value is read before the lock is taken; only the write is locked."""
import random
import time
from multiprocessing import Manager, Process


def decrement(counter, lock):
    """Take one from counter["value"] and return the value written."""
    value = counter["value"]
    time.sleep(random.uniform(0, 0.1))  # the till takes a moment
    with lock:
        counter["value"] = value - 1
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
