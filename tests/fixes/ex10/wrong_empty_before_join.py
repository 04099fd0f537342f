"""Wrong: main() reads counts off the queue while q.empty() is False, before the processes have put them."""
import time
from multiprocessing import Process, Queue


def count_primes(start, stop):
    """How many primes n there are with start <= n < stop (given: CPU-bound, no waiting)."""
    count = 0
    for n in range(max(start, 2), stop):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


def split(limit, parts):
    """`parts` ranges (start, stop) that together cover 0 <= n < limit, each number once (given)."""
    size, extra = divmod(limit, parts)
    ranges, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def count_into(counts, start, stop):
    """Count the primes of one range and put the count on the queue `counts`."""
    counts.put(count_primes(start, stop))


def main(limit=1_000_000, workers=4):
    """The number of primes below `limit`, counted in `workers` parts at the same time."""
    counts = Queue()
    processes = [Process(target=count_into, args=(counts, start, stop)) for start, stop in split(limit, workers)]
    for p in processes:
        p.start()
    total = 0
    while not counts.empty():
        total += counts.get()
    for p in processes:
        p.join()
    return total


if __name__ == "__main__":
    began = time.perf_counter()
    total = main()
    print(f"{total} primes below 1000000, counted in {time.perf_counter() - began:.2f} s")
