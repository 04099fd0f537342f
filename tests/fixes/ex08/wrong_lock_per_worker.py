"""Wrong: each worker makes its own lock, so the workers do not share one lock."""
import json
import os
import random
import time
from multiprocessing import Lock, Process


def load(path):
    """Read the shared data (given)."""
    with open(path) as f:
        return json.load(f)


def save(path, data):
    """Replace the shared data atomically (given)."""
    tmp_path = f"{path}.{os.getpid()}.tmp"
    with open(tmp_path, "w") as f:
        json.dump(data, f)
    os.replace(tmp_path, path)


def score(document):
    """The score of a document: its number of words. Reading it is slow; it changes nothing (given)."""
    time.sleep(random.uniform(0.5, 1.5))  # reading a document takes a while
    return len(document.split())


def add_to_total(path, amount):
    """Add `amount` to the total in `path`: a read-modify-write of shared data, the critical section (given)."""
    data = load(path)
    data["total"] += amount
    save(path, data)


def worker(path, lock, documents):
    """Score each of `documents` and add its score to the shared total."""
    for document in documents:
        points = score(document)
        with Lock():  # a new lock: nobody else ever waits for it
            add_to_total(path, points)


def make_documents(count):
    """`count` documents; document n has n + 1 words (given)."""
    return [" ".join(["word"] * (n + 1)) for n in range(count)]


def main(path="total.json", workers=4, count=12):
    """Share `count` documents out among `workers` worker processes; return the final total."""
    save(path, {"total": 0})
    lock = Lock()
    documents = make_documents(count)
    processes = [Process(target=worker, args=(path, lock, documents[w::workers])) for w in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    return load(path)["total"]


if __name__ == "__main__":
    start = time.monotonic()
    total = main()
    print(f"total: {total} (expected {12 * 13 // 2}), in {time.monotonic() - start:.1f} s")
