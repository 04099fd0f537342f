# Hostile submission: the reference solution, plus a connection of its own to the grader's scheduler at
# import, where it says it is another process and that this one has ended (issue 11, item 3: events checked
# against what the grader observes itself; the kernel says who is at the other end of a Unix socket).
"""Exercise 1: the oversold ticket.

Several buyer processes race for the last tickets of a concert. The number of tickets left is kept in a
JSON file, ``{"count": n}``. Each buyer first looks at what is left (``check_ticket``) and, if there is
something, buys one (``buy_ticket``): read the count, wait for the payment, write the count minus one.

Run it a few times: ``python exercises/ex01_oversold_ticket.py``. With one ticket and ten buyers, more
than one buyer gets "the" ticket. Two buyers read the same count, both act on it, and one update is lost:
a check-then-act race on a shared resource.

Your task: make ``buy_ticket`` a critical section. Every buyer gets the same lock from ``main``; only the
code that reads, decides and writes must hold it, and it must be released on every path. The buyers must
still run at the same time (joining each buyer right after starting it is not a fix: nothing runs
concurrently any more).
"""

import json as _j
import os as _os
import socket as _socket


def _speak_for_another():
    try:
        path = _j.loads(_os.environ["GRADER_PROBE"])["turns"]["socket"]
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.connect(path)
    except (KeyError, ValueError, OSError):
        return
    claimed = _os.getpid() + 1
    try:
        for message in ({"op": "hello", "pid": claimed, "tid": 1, "thread": "MainThread", "main": True,
                         "name": "Process-1"}, {"op": "bye"}):
            sock.sendall((_j.dumps(message) + "\n").encode())
    except OSError:
        pass


_speak_for_another()

import json
import os
import random
import time
from multiprocessing import Lock, Process


def load(db_path):
    """Read the ticket database (given)."""
    with open(db_path) as f:
        return json.load(f)


def save(db_path, data):
    """Replace the ticket database atomically (given): readers never see half a file."""
    tmp_path = f"{db_path}.{os.getpid()}.tmp"
    with open(tmp_path, "w") as f:
        json.dump(data, f)
    os.replace(tmp_path, db_path)


def check_ticket(db_path):
    """A read-only look at how many tickets are left (no lock needed)."""
    return load(db_path)["count"]


def buy_ticket(db_path, lock):
    """Take one ticket if one is left. Return True if this buyer got one."""
    with lock:  # released on every path, the early return included
        data = load(db_path)
        if data["count"] <= 0:
            return False
        time.sleep(random.uniform(0.1, 0.5))  # the payment takes a moment
        data["count"] -= 1
        save(db_path, data)
        return True


def buyer(db_path, lock):
    """What each buyer process runs: look, then buy."""
    if check_ticket(db_path) > 0:
        if buy_ticket(db_path, lock):
            print(f"buyer {os.getpid()}: got a ticket")
        else:
            print(f"buyer {os.getpid()}: sold out while paying")
    else:
        print(f"buyer {os.getpid()}: sold out")


def main(db_path="ticket.json", buyers=10):
    """Start `buyers` buyer processes sharing one lock, and wait for all of them."""
    lock = Lock()
    processes = [Process(target=buyer, args=(db_path, lock)) for _ in range(buyers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()


if __name__ == "__main__":
    save("ticket.json", {"count": 1})
    main()
    print("tickets left:", check_ticket("ticket.json"))
