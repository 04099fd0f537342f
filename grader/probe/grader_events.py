"""The probe's event vocabulary, defined once for both sides: the probe and the driver emit these events in
student processes (imported there as `grader_events`, the probe folder being on PYTHONPATH), and the grader
reads them (as `grader.probe.grader_events`). Standard library only, and nothing of the grader.

Every event is a JSON object with "t" (time.monotonic()), "pid", "tid" and "ev" (one of the names below),
plus the fields named in each comment."""
from __future__ import annotations

# Locks (fields: lock, kind, where; where = [file, line, function] of the student's call)
ACQUIRE_WAIT = "acquire_wait"  # about to block on acquire()
ACQUIRED = "acquired"
ACQUIRE_FAILED = "acquire_failed"  # a non-blocking or timed acquire() that gave up
RELEASED = "released"
RELEASE_ERROR = "release_error"  # release() raised (error)
LOCK_NEW = "lock_new"  # the student made a lock (lock, kind, where: the line that made it)
SELF_DEADLOCK = "self_deadlock"  # a process acquired a non-reentrant lock it already held (held_since)

# Queues (fields: queue, where; item for puts and gets, error for the *_raise events)
Q_PUT = "q_put"
Q_PUT_DONE = "q_put_done"
Q_PUT_RAISE = "q_put_raise"
Q_GET_WAIT = "q_get_wait"  # about to block on get() (args)
Q_GET = "q_get"
Q_GET_RAISE = "q_get_raise"
Q_TASK_DONE = "q_task_done"
Q_JOIN_WAIT = "q_join_wait"
Q_JOINED = "q_joined"

# Processes and threads
SPAWN = "spawn"  # the parent started a child (child, name, daemon, target, where)
PROC_START = "proc_start"  # first event of every process (name, daemon, target, parent)
PROC_RUN = "proc_run"  # the child's target begins
PROC_EXIT = "proc_exit"  # (code)
MAIN_DONE = "main_done"  # the main program's code finished (waiting: non-daemon children, daemons)
THREAD_SPAWN = "thread_spawn"  # (name, daemon, thread, where)
THREAD_START = "thread_start"
THREAD_EXIT = "thread_exit"

# Spied functions (func; args, value or error)
CALL = "call"
RETURN = "return"
RAISE = "raise"

# The driver: importing the student's module and calling the plan's steps
IMPORT_START = "import_start"  # (module)
IMPORT_DONE = "import_done"
IMPORT_ERROR = "import_error"  # (error, message, frames, text)
IMPORT_EXIT = "import_exit"  # sys.exit() at import (code, frames)
CONTRACT_ERROR = "contract_error"  # (problems)
STEP_START = "step_start"  # (step, call, label)
STEP_END = "step_end"  # (step; value, or error and frames, or exit)
WORK_START = "work_start"  # a replaced function of the plan began (args)
WORK_END = "work_end"  # (lines_seen, raised)

# The run's files (first bytes read or written, the student's frames)
FILE_READ = "file_read"  # (path, head, frames)
FILE_WRITE = "file_write"  # (path, head, frames)
FILE_EVENTS = (FILE_READ, FILE_WRITE)
# Shared state behind a Manager: a read or a write through a proxy by the student's code (typeid, method,
# key, value: the value read or written, described; frames)
SHARED_READ = "shared_read"
SHARED_WRITE = "shared_write"

# The probe itself
TAMPER = "tamper"  # the student's code replaced what the probe patched (replaced)
EVENTS_TRUNCATED = "events_truncated"  # this process emitted more events than are kept (limit)

LOCK_EVENTS = (ACQUIRE_WAIT, ACQUIRED, ACQUIRE_FAILED, RELEASED, RELEASE_ERROR, SELF_DEADLOCK)
QUEUE_EVENTS = (Q_PUT, Q_PUT_DONE, Q_PUT_RAISE, Q_GET_WAIT, Q_GET, Q_GET_RAISE, Q_TASK_DONE, Q_JOIN_WAIT, Q_JOINED)

# The controlled scheduler's protocol (grader_turns.py in student processes, running/conductor.py in the
# grader): one JSON line per message over each student thread's own connection to the conductor.
TURN_HELLO = "hello"  # a thread joins the schedule (pid, tid, name, thread, parent)
TURN_STEP = "step"  # at a synchronisation point: wait for the turn (point, res; at_least: the virtual time an
#   unmodelled wait that used up its timeout has reached)
TURN_BLOCK = "block"  # a non-blocking try on res failed: wait until res is signalled (deadline)
TURN_GET = "get"  # a blocking get on queue res: the turn only when the conductor knows an item is there (deadline)
TURN_JOIN = "join"  # join a student process (child: the turn once its every thread has left) or a thread of this
#                    process (thread: its ident; the turn once it has left) (deadline)
TURN_SLEEP = "sleep"  # wait until the run's virtual time reaches `until`
TURN_SIGNAL = "signal"  # res may have changed (delta: items put on or taken off a queue); no reply
TURN_SPAWNED = "spawned"  # this thread started a student process (child) or thread of its process (thread); no reply
TURN_OFF = "off"  # leaving the schedule for a call the conductor does not model (a join, a wait); no reply
TURN_BYE = "bye"  # the thread ends; no reply
TURN_MARK = "mark"  # the driver begins step `step` of its plan (taken: go on from this count of turns); no reply
# Replies: {"go": 1, "off": offset} the turn (offset: virtual minus real seconds); {"timeout": 1} the wait's
# deadline passed first; {"real": 1} make the real blocking call, off the schedule (the conductor cannot tell
# what would unblock it: a deadlock then shows as one, with real stacks).
