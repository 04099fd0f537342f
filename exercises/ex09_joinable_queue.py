"""Exercise 9: a worker pool on a JoinableQueue.

``main`` starts a pool of ``workers`` worker processes, puts every task on one shared
``multiprocessing.JoinableQueue`` and waits in ``tasks.join()``: a JoinableQueue counts the items put on
it, every ``task_done()`` marks one of them done, and ``join()`` returns once every item put has been
marked done. The workers loop forever, so they are daemons: nobody joins them, and they are terminated
when the main process's code ends. Each result goes into a dict kept by a Manager (a server process
holding shared dicts), so that ``main`` can return them.

Run it: ``python exercises/ex09_joinable_queue.py``. Some tasks are invalid and ``handle`` raises
``ValueError`` for them. The worker that took such a task dies with the exception, before its
``task_done()``: the task is never marked done, ``tasks.join()`` waits forever, and once every worker has
died nobody takes the tasks that are left.

Your task: in ``worker``, mark every task done exactly once, after its work, whatever happens to it: a
task that raises is reported (print it) and left out of the results, and its worker goes on with the next
task. The contract, which the grader calls: ``handle(task)``, ``worker(tasks, results)`` and
``main(tasks, workers)``, which returns ``{task: result}`` for the tasks that succeeded.
"""
import random
import time
from multiprocessing import JoinableQueue, Manager, Process


def handle(task):
    """Do one task (given): its result, after a while; an invalid (negative) task raises ValueError."""
    time.sleep(random.uniform(0.1, 0.5))  # the work takes a while
    if task < 0:
        raise ValueError(f"invalid task {task}")
    return task * task


def worker(tasks, results):
    """Forever: take a task off `tasks`, store its result in `results`, and mark the task done."""
    while True:
        task = tasks.get()
        # TODO: when handle() raises, the worker dies here and the task is never marked done
        results[task] = handle(task)
        tasks.task_done()


def main(tasks, workers=3):
    """Handle every task on a pool of `workers` daemon workers; return {task: result} of the tasks that succeeded."""
    with Manager() as manager:
        results = manager.dict()
        queue = JoinableQueue()
        for _ in range(workers):
            Process(target=worker, args=(queue, results), daemon=True).start()
        for task in tasks:
            queue.put(task)
        queue.join()  # returns once every task put has been marked done
        return dict(results)


if __name__ == "__main__":
    print(main([1, 2, -3, 4, 5, -6, 7, 8], workers=3))
    print("all tasks done")
