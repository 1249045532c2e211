"""A paced load generator, run as its own process: `python -m launcher.bench.paced < plan.json`.

wrk keeps a fixed number of connections busy (closed loop): it measures the most a server can
do, not how fast it answers at a given rate. This sends requests on a schedule instead — every
stream sends its next request at `offset + k × interval` whether or not earlier answers came
back — and measures each latency from the *scheduled* moment, so a stalled server is charged
for every request it delayed (no coordinated omission).

The plan (JSON on stdin):

    {"base": "http://127.0.0.1:8123", "headers": {"Cookie": "…"}, "duration": 10,
     "workers": 32,
     "streams": [{"path": "/runs/1/status", "interval": 0.01, "offset": 0},
                 {"first": "/runs/2/", "path": "/runs/2/status", "interval": 2, "offset": 0.3}]}

Answers to requests scheduled in the first `warmup` seconds (default 0) are not counted: they
pay for opening the connections.

A stream sends `first` (when given) once, then `path` at each later slot: a viewer who opens
a run page, then polls its status fragment. The result (JSON on stdout) has every latency in
milliseconds, the status codes and the errors.

Standard library only: the load process shares nothing with the server but the socket.
"""

import http.client
import json
import queue
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def schedule(plan: dict) -> list[tuple[float, str]]:
    """Every (seconds after the start, path) the plan asks for, in time order."""
    slots = []
    duration = float(plan["duration"])
    for stream in plan["streams"]:
        interval = float(stream["interval"])
        moment = float(stream.get("offset", 0.0))
        first = stream.get("first")
        while moment < duration:
            slots.append((moment, first or stream["path"]))
            first = None
            moment += interval
    slots.sort(key=lambda slot: slot[0])
    return slots


def run(plan: dict) -> dict:
    target = urlsplit(plan["base"])
    headers = dict(plan.get("headers", {}))
    slots = schedule(plan)
    work: queue.Queue = queue.Queue()
    for slot in slots:
        work.put(slot)
    # (latency from the scheduled moment, service time, status, scheduled offset)
    results: list[tuple[float, float, int, float]] = []
    errors: Counter = Counter()
    lock = threading.Lock()
    start = time.perf_counter() + 0.2  # let every worker reach its first slot in time

    def connect():
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        connection.connect()
        return connection

    def worker():
        # Connects at its first request, not before: gunicorn's gthread worker holds a thread
        # for a connection until its first request arrives, so idle sockets would starve it.
        connection = None
        while True:
            try:
                offset, path = work.get_nowait()
            except queue.Empty:
                break
            due = start + offset
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sent = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(
                        target.hostname, target.port, timeout=30
                    )
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                if connection is not None:
                    connection.close()
                connection = None
                continue
            done = time.perf_counter()
            with lock:
                results.append(((done - due) * 1000, (done - sent) * 1000, status, offset))
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(int(plan.get("workers", 32)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    warmup = float(plan.get("warmup", 0.0))
    results = [result for result in results if result[3] >= warmup]
    return {
        "scheduled": len(slots),
        "elapsed_s": elapsed,
        "scheduled_counted": sum(1 for offset, _ in slots if offset >= warmup),
        "latencies_ms": [result[0] for result in results],
        "service_ms": [result[1] for result in results],
        "statuses": dict(Counter(str(result[2]) for result in results)),
        "errors": dict(errors),
    }


def main() -> None:
    json.dump(run(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
