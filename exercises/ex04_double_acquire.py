"""Exercise 4: the double acquire.

Client processes deposit into one shared bank account, kept in a JSON file ``{"balance": n}``. Every
function that touches the account takes the same lock, so that no update is lost.

Run it: ``python exercises/ex04_double_acquire.py``. It hangs at the first deposit. Two bugs hide here:
- ``deposit`` holds the lock and calls ``read_balance``, which acquires it again. A ``Lock`` is not
  reentrant: a process that acquires it twice without a release waits for itself forever.
- ``withdraw`` raises ``InsufficientFunds`` while it holds the lock and never releases it, so the next
  client waits forever. Every ``acquire()`` needs exactly one ``release()``, on every path, exceptions
  included (``with lock:`` does this for you).

Your task: fix both, keeping the lock: without it, concurrent deposits lose updates.
"""
import json
import os
import random
import time
from multiprocessing import Lock, Process


class InsufficientFunds(Exception):
    """A withdrawal larger than the balance."""


def load(db_path):
    """Read the account (given)."""
    with open(db_path) as f:
        return json.load(f)


def save(db_path, data):
    """Replace the account atomically (given)."""
    tmp_path = f"{db_path}.{os.getpid()}.tmp"
    with open(tmp_path, "w") as f:
        json.dump(data, f)
    os.replace(tmp_path, db_path)


def read_balance(db_path, lock):
    """The current balance."""
    with lock:
        return load(db_path)["balance"]


def deposit(db_path, lock, amount):
    """Add `amount` to the balance."""
    with lock:
        # TODO: read_balance takes the lock again while this function holds it
        balance = read_balance(db_path, lock)
        time.sleep(random.uniform(0, 0.1))  # the bank is slow
        save(db_path, {"balance": balance + amount})


def withdraw(db_path, lock, amount):
    """Take `amount` from the balance; raise InsufficientFunds, leaving it unchanged, when it is too small."""
    lock.acquire()
    balance = load(db_path)["balance"]
    if balance < amount:
        # TODO: this path leaves the lock held
        raise InsufficientFunds(f"balance {balance} < {amount}")
    time.sleep(random.uniform(0, 0.1))
    save(db_path, {"balance": balance - amount})
    lock.release()


def client(db_path, lock, deposits, amount):
    """`deposits` deposits of `amount`, then one withdrawal that is too large."""
    for _ in range(deposits):
        deposit(db_path, lock, amount)
    try:
        withdraw(db_path, lock, 10**9)
    except InsufficientFunds as e:
        print(f"client {os.getpid()}: withdrawal refused ({e})")


def main(db_path="account.json", clients=4, deposits=5, amount=10):
    """Open the account with a balance of 0 and let `clients` clients work on it at the same time."""
    save(db_path, {"balance": 0})
    lock = Lock()
    processes = [Process(target=client, args=(db_path, lock, deposits, amount)) for _ in range(clients)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()


if __name__ == "__main__":
    main()
    print("final balance:", load("account.json")["balance"])
