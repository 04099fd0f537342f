"""Wrong: no lock; the payment comes first, so the read, the decision and the write follow each other with no
sleep in between: a narrow window, open only when two buyers finish paying at nearly the same moment."""
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
    time.sleep(random.uniform(0.1, 0.5))  # pay first: then the read and the write are close together
    data = load(db_path)
    if data["count"] <= 0:
        return False
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
