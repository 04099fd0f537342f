"""Correct: non-daemon workers that main() stops with one None sentinel each, after q.join(), and joins."""
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
        if task is None:  # main's sentinel: no more tasks
            tasks.task_done()
            return
        try:
            results[task] = handle(task)
        except Exception as error:
            print(f"task {task!r} failed: {error}")
        finally:
            tasks.task_done()


def main(tasks, workers=3):
    """Handle every task on a pool of `workers` daemon workers; return {task: result} of the tasks that succeeded."""
    with Manager() as manager:
        results = manager.dict()
        queue = JoinableQueue()
        pool = [Process(target=worker, args=(queue, results)) for _ in range(workers)]
        for p in pool:
            p.start()
        for task in tasks:
            queue.put(task)
        queue.join()  # returns once every task put has been marked done
        for _ in pool:
            queue.put(None)
        for p in pool:
            p.join()
        return dict(results)


if __name__ == "__main__":
    print(main([1, 2, -3, 4, 5, -6, 7, 8], workers=3))
    print("all tasks done")
