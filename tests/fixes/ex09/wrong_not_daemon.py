"""Wrong: the workers are not daemons: after main() returns, Python waits for them at exit forever."""
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
        try:
            results[task] = handle(task)
        except Exception as error:  # a failing task is reported; its worker goes on with the next one
            print(f"task {task!r} failed: {error}")
        finally:
            tasks.task_done()  # exactly once per task, after its work, on every path


def main(tasks, workers=3):
    """Handle every task on a pool of `workers` daemon workers; return {task: result} of the tasks that succeeded."""
    with Manager() as manager:
        results = manager.dict()
        queue = JoinableQueue()
        for _ in range(workers):
            Process(target=worker, args=(queue, results)).start()
        for task in tasks:
            queue.put(task)
        queue.join()  # returns once every task put has been marked done
        return dict(results)


if __name__ == "__main__":
    print(main([1, 2, -3, 4, 5, -6, 7, 8], workers=3))
    print("all tasks done")
