"""The net level's read-only view of the machine, made inside the run's own mount namespace before any student code:
every mount read-only (the checkout, the grader package, the virtualenv, Python's own library, /proc, /sys), a
minimal /dev, the hidden folders covered by empty ones with what the run needs bound back read-only, a private
/dev/shm and /tmp of bounded size, the run's folder writable; then, unless the keeper drops to an unprivileged uid
itself, every capability is dropped for good (no_new_privs, an empty bounding set, SECBIT_NOROOT locked), so that
student code, "root" in its namespace, can neither remount anything writable nor undo a cover (a user namespace it
makes gets the mounts locked by the kernel).

Usage: ``python -I -S mountns.py [--writable DIR]... [--hide DIR]... [--scratch DIR]... [--need PATH]...
[--shm BYTES] [--scratch-size BYTES] [--drop-caps] [--error-file FILE] -- COMMAND...``; it then execs COMMAND
(the keeper), keeping its pid (pid 1 of the run's pid namespace). `--check -- true` tries the same on an empty
list (the level's detection). A step that fails stops here with exit 125 and the reason on stderr (and in
--error-file): student code never runs with a partial view.

Run as a script by the unshare(1) that made the namespaces: standard library only, it imports nothing from grader.
"""
from __future__ import annotations

import ctypes
import os
import stat
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 0x20, 0x400, 0x800, 0x1000, 0x4000
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
ST_NOSUID, ST_NODEV, ST_NOEXEC, ST_NOATIME, ST_NODIRATIME, ST_RELATIME = 0x2, 0x4, 0x8, 0x400, 0x800, 0x1000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (syscalls after 424 are unified)
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY, MNT_DETACH = -100, 0x8000, 0x1, 0x2
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 24, 28, 47, 4
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_KEEP_CAPS_LOCKED, SECBIT_NO_CAP_AMBIENT_RAISE and their locks
SECUREBITS = 0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
EXIT_SETUP_FAILED = 125
CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class SetupError(Exception):
    """A step of the view could not be made."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {source or ''} on {target}")


def _kept_flags(path: str) -> int:
    """The per-mount flags of `path` a bind remount must keep (the kernel locks them in a user namespace)."""
    found = os.statvfs(path).f_flag
    flags = 0
    for st_flag, ms_flag in ((ST_NOSUID, MS_NOSUID), (ST_NODEV, MS_NODEV), (ST_NOEXEC, MS_NOEXEC),
                             (ST_NOATIME, MS_NOATIME), (ST_NODIRATIME, MS_NODIRATIME), (ST_RELATIME, MS_RELATIME)):
        if found & st_flag:
            flags |= ms_flag
    return flags


def _remount(path: str, read_only: bool) -> None:
    _mount(None, path, None, MS_REMOUNT | MS_BIND | (MS_RDONLY if read_only else 0) | _kept_flags(path))


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo", "rb") as f:
        points = [line.split()[4].decode("unicode_escape") for line in f]
    return sorted(set(points), key=lambda p: p.count("/"))


def read_only_everything() -> None:
    """Every mount of the namespace read-only: one recursive mount_setattr (Linux >= 5.12), else one bind remount
    per mount point."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    if _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)) == 0:
        return
    for point in _mount_points():
        try:
            _remount(point, read_only=True)
        except SetupError:
            if os.path.exists(point):  # a mount point covered by a later mount is unreachable, and harmless
                raise
        except OSError:
            continue


def _path_fd(path: str) -> int:
    """An O_PATH descriptor of `path`: what is bound back after a cover hides it (through /proc/self/fd)."""
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def _bind_from(fd: int, target: str, is_dir: bool) -> None:
    """Bind what `fd` names onto `target`, making the mount point inside a cover first."""
    if not os.path.lexists(target):
        os.makedirs(target if is_dir else os.path.dirname(target), mode=0o755, exist_ok=True)
        if not is_dir:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)


def minimal_dev(shm_size: int | None) -> None:
    """A /dev with only the harmless devices (no disks, no /dev/kmsg) and a private, size-limited /dev/shm (made
    read-only by cover_and_bind_back, once what the run needs is bound back)."""
    fds = {name: _path_fd(f"/dev/{name}") for name in DEVICES if os.path.exists(f"/dev/{name}")}
    _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
    for name, fd in fds.items():
        _bind_from(fd, f"/dev/{name}", is_dir=False)
        os.close(fd)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")
    os.mkdir("/dev/shm", 0o1777)
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={shm_size or 64 * 1024 * 1024}")


def _under(path: str, folder: str) -> bool:
    return path != folder and path.startswith(folder.rstrip("/") + "/")


def cover_and_bind_back(fds: dict[str, int], hide: list[str], scratch: list[str], scratch_size: int,
                        writable: list[str]) -> None:
    """Cover each hidden folder with an empty one (read-only; a scratch one writable by all, as /tmp), then bind
    back, from the descriptors taken before any cover, what the run needs from inside them (read-only: every mount
    already is) and the writable folders (read-write). /dev counts as a cover (minimal_dev made it)."""
    covers: list[str] = ["/dev"]
    for folder in sorted({*hide, *scratch}, key=lambda p: p.count("/")):
        if not os.path.isdir(folder):  # missing, or already inside a cover
            continue
        mode, size = ("1777", scratch_size) if folder in scratch else ("755", 64 * 1024)
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size={size}")
        covers.append(folder)
    for path in sorted(fds, key=lambda p: p.count("/")):
        if any(_under(path, c) for c in covers) or path in writable:
            _bind_from(fds[path], path, is_dir=stat.S_ISDIR(os.stat(f"/proc/self/fd/{fds[path]}").st_mode))
        os.close(fds[path])
    for path in writable:
        if path in fds:
            _remount(path, read_only=False)
    for folder in covers:
        if folder not in scratch:
            _remount(folder, read_only=True)


def drop_privileges() -> None:
    """No capability ever again for this process and what it execs: uid 0 in the namespace stays uid 0 (its files
    are the run's), but may not mount, remount, or gain privileges through a setuid program."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0), "securebits")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    # And none left to this process itself (an exec would clear them; the keeper may run in this interpreter).
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "clear capabilities")


def _report(options: "Options", message: str) -> None:
    """Write `message` to the error file, where the grader finds it (a grader error, never the student's fault).
    The half-made view may cover or write-protect that file: nothing of the run will ever start in this namespace,
    so the covers are taken off and the mounts made writable again first, as far as they go."""
    for folder in sorted({"/dev", *options.lists["--hide"], *options.lists["--scratch"]}, key=lambda p: -p.count("/")):
        _libc.umount2(folder.encode(), MNT_DETACH)
    attr = _MountAttr(0, MOUNT_ATTR_RDONLY, 0, 0)
    _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr))
    try:
        with open(options.error_file, "w") as f:
            f.write(message + "\n")
    except OSError:
        pass


class Options:
    def __init__(self) -> None:
        self.lists: dict[str, list[str]] = {"--writable": [], "--hide": [], "--scratch": [], "--need": []}
        self.shm: int | None = None
        self.scratch_size = 256 * 1024 * 1024
        self.drop_caps = False
        self.error_file: str | None = None
        self.command: list[str] = []


def _parse(args: list[str]) -> Options:
    options = Options()
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--drop-caps":
            options.drop_caps = True
        elif option == "--check":
            options.drop_caps = True
            options.lists["--scratch"].append("/tmp")
        elif option in options.lists:
            options.lists[option].append(os.path.abspath(args.pop(0)))
        elif option == "--shm":
            options.shm = int(args.pop(0))
        elif option == "--scratch-size":
            options.scratch_size = int(args.pop(0))
        elif option == "--error-file":
            options.error_file = args.pop(0)
        else:
            raise SetupError(f"unknown option {option}")
    options.command = args[1:]
    if not options.command:
        raise SetupError("no command")
    return options


def main(argv: list[str]) -> int:
    options: Options | None = None
    try:
        options = _parse(list(argv))
        lists = options.lists
        if os.getpid() != 1:  # outside a new pid (and mount) namespace this would remount the machine's own files
            raise SetupError("not the first process of a new pid and mount namespace (run it under unshare --fork)")
        cwd = os.getcwd()
        _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing of ours may propagate to the machine's mounts
        # Descriptors of what is bound back, taken before anything covers it (a run folder may be in /dev/shm).
        fds = {path: _path_fd(path) for path in {*lists["--need"], *lists["--writable"]} if os.path.exists(path)}
        read_only_everything()
        minimal_dev(options.shm)
        cover_and_bind_back(fds, lists["--hide"], lists["--scratch"], options.scratch_size, lists["--writable"])
        os.chdir(cwd)  # the working folder as the new mounts show it (the old one is read-only or covered)
        if options.drop_caps:
            drop_privileges()
    except (SetupError, OSError, ValueError, IndexError) as error:
        message = f"the run's read-only view of the machine could not be made: {error}"
        print(f"grader: {message}", file=sys.stderr)
        if options is not None and options.error_file:
            _report(options, message)
        return EXIT_SETUP_FAILED
    command = options.command
    if command[:3] == [sys.executable, "-I", "-S"] and len(command) > 3 and command[3].endswith(".py"):
        # A script for this same interpreter and flags (the keeper): run it here, as its own __main__, which
        # saves a Python start per run.
        import runpy

        sys.argv = command[3:]
        runpy.run_path(command[3], run_name="__main__")
        return 0
    os.execvp(command[0], command)
    return EXIT_SETUP_FAILED  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
