"""Driving the load processes from the harness: wrk (closed loop, the most the server can do)
and `paced` (a fixed schedule, latency at a given rate). Both run as separate processes on
loopback, each bounded in time."""

import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

WRK = "wrk"


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int
    socket_errors: int


@dataclass(frozen=True)
class PacedResult:
    scheduled: int
    latencies_ms: list[float]
    statuses: dict[str, int]
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)

    @property
    def failures(self) -> int:
        bad = sum(count for status, count in self.statuses.items() if not status.startswith("2"))
        return bad + sum(self.errors.values())


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (what wrk and most load tools report); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def wrk_available() -> bool:
    return shutil.which(WRK) is not None


def wrk_run(
    url: str,
    *,
    headers: dict[str, str],
    seconds: int,
    connections: int = 10,
    threads: int = 2,
) -> WrkResult:
    command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    done = subprocess.run(  # noqa: S603 - our own command line, no outside input
        command, capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    return wrk_parse(done.stdout)


_DURATION_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _DURATION_UNITS[unit]


def wrk_parse(output: str) -> WrkResult:
    """Read wrk's report (`--latency`): requests/s, the 50% and 99% latencies, failures."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise ValueError(f"Unreadable wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        p50_ms=_milliseconds(p50.group(1)),
        p99_ms=_milliseconds(p99.group(1)),
        requests=int(total.group(1)),
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def paced_run(plan: dict) -> PacedResult:
    """Run `launcher.bench.paced` in its own process with `plan`; wait for its result."""
    done = subprocess.run(
        [sys.executable, "-m", "launcher.bench.paced"],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=float(plan["duration"]) + 60,
        check=True,
    )
    result = json.loads(done.stdout)
    return PacedResult(
        scheduled=result["scheduled_counted"],
        latencies_ms=result["latencies_ms"],
        statuses=result["statuses"],
        errors=result["errors"],
    )
