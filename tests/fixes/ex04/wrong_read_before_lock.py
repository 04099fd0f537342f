"""Wrong: deposit reads the balance before taking the lock and holds it only around the write: deposits are lost."""
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
    balance = load(db_path)["balance"]  # read before the lock: another client may write in between
    time.sleep(random.uniform(0, 0.1))  # the bank is slow
    with lock:
        save(db_path, {"balance": balance + amount})


def withdraw(db_path, lock, amount):
    """Take `amount` from the balance; raise InsufficientFunds, leaving it unchanged, when it is too small."""
    with lock:  # released on every path, the raise included
        balance = load(db_path)["balance"]
        if balance < amount:
            raise InsufficientFunds(f"balance {balance} < {amount}")
        time.sleep(random.uniform(0, 0.1))
        save(db_path, {"balance": balance - amount})


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
