"""Exercise 8: lock granularity.

Worker processes score documents and add each score to a shared total, kept in a JSON file
``{"total": n}``. Scoring a document (``score``) is slow, and it only reads the document: it touches nothing
shared, so it needs no lock. Adding the score to the total (``add_to_total``) is a read-modify-write of the
shared file: two processes that read the same total lose one of the two updates, so that part needs the lock.

Run it: ``python exercises/ex08_lock_granularity.py``. The total is right, but the workers take turns: each
one holds the lock during the slow scoring too, so only one process works at a time while the others wait
for the lock. A lock does not lock the resource, only the code between ``acquire()`` and ``release()``:
coarse locks hold more code and run slower; fine locks hold less and run faster.

Your task: in ``worker``, hold the lock only around the read-modify-write of the total, so that the scoring
of different processes runs in parallel. Keep the lock around the whole read-modify-write: without it,
updates of the total are lost. Keep the names and parameters, the grader calls them:
- score(document): the score of one document, its number of words (slow, read-only, given);
- add_to_total(path, amount): adds `amount` to the total in `path` (the critical section, given);
- worker(path, lock, documents): scores each of its documents and adds each score to the total;
- main(path, workers, count): shares `count` documents out among `workers` worker processes, all using
  one lock, and returns the final total (document n has n + 1 words: the total is 1 + 2 + ... + count).
"""
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
        # TODO: the lock is held during the slow, read-only scoring too: hold it only where it is needed
        with lock:
            points = score(document)
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
