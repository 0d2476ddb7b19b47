"""A model of a backlog draining through the rate limiter, in simulated time: for choosing the
limiter's settings (the pace, the line's rate) in seconds instead of minutes per trial.

    python -m bench.ratelimit_model

It models what decides where slots go idle, not the code: the two moving windows (pace and
limit), the line of waiting jobs, waits of less than a tick taken in place, RQ's scheduler (due
times in whole seconds, rounded up, looked at once a second) and a few workers with fixed costs
per call and per wait. It knows nothing of Redis, HTTP or CPU contention: check any choice with
``python -m bench.pipeline backlog``. Prints the share of the limit (as ``bench.pipeline`` counts
it) and runs per order, for each rate and setting.
"""

from __future__ import annotations

import collections
import heapq
import math

WINDOW = 61  # the bridge's window: Loyalty.lt's 60 s and the margin
TICK = 1.0


def drain(limit: int, orders: int, pace_burst: float, line_rate: float, pace_seconds: int = 10,
          workers: int = 3, call_s: float = 0.012, wait_s: float = 0.005, tick_phase: float = 0.37) -> tuple[float, float]:
    """Share of the limit sustained, and runs per order, for one backlog."""
    pace_amount = max(1, math.ceil(limit * pace_burst * pace_seconds / WINDOW))
    pace: collections.deque[float] = collections.deque()
    window: collections.deque[float] = collections.deque()

    def full(entries: collections.deque[float], seconds: float, amount: int, now: float) -> bool:
        while entries and entries[0] <= now - seconds:
            entries.popleft()
        return len(entries) >= amount

    spacing, last_turn = WINDOW / limit / line_rate, 0.0
    queue, scheduled = collections.deque(range(orders)), []  # RQ's queue; (due second, job)
    free_at, next_tick = [0.0] * workers, tick_phase
    calls: list[float] = []
    runs = 0
    while len(calls) < orders:
        worker = min(range(workers), key=free_at.__getitem__)
        now = free_at[worker]
        while next_tick <= now:
            while scheduled and scheduled[0][0] <= math.floor(next_tick):
                queue.append(heapq.heappop(scheduled)[1])
            next_tick += TICK
        if not queue:
            free_at[worker] = next_tick + 0.001
            continue
        job, runs, deadline = queue.popleft(), runs + 1, now + TICK
        while True:
            pace_full = full(pace, pace_seconds, pace_amount, now)
            limit_full = full(window, WINDOW, limit, now)
            if not pace_full and not limit_full:
                pace.append(now), window.append(now), calls.append(now)
                now += call_s
                break
            frees = max(pace[0] + pace_seconds if pace_full else 0.0, window[0] + WINDOW if limit_full else 0.0)
            if frees <= deadline:
                now = frees + 1e-6  # waited in place
                continue
            last_turn = max(frees, last_turn + spacing)
            heapq.heappush(scheduled, (math.ceil(last_turn), job))
            now += wait_s
            break
        free_at[worker] = now
    first = min(len(calls), limit)
    return round((len(calls) - first) / (calls[-1] - calls[first - 1]) * 60 / limit, 3), round(runs / orders, 2)


def main() -> None:
    settings = [(2, 1.25), (2, 2), (1, 1.5), (1, 2)]
    print("limit/min  orders  " + "  ".join(f"pace {p}x line {r}x" for p, r in settings))
    for limit, orders in ((60, 300), (600, 2500), (3000, 9000)):
        cells = [drain(limit, orders, p, r) for p, r in settings]
        print(f"{limit:>9}  {orders:>6}  " + "  ".join(f"{share:.3f} ({runs} runs)" for share, runs in cells))


if __name__ == "__main__":
    main()
