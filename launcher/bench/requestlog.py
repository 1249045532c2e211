"""Reading the bench server's request log (written by `launcher.bench.wsgi`, one file per
gunicorn process): upstream calls that reached the sandbox, and traced launcher requests with
their query counts."""

import re
from dataclasses import dataclass
from pathlib import Path

_RUN_PATH = re.compile(r"^/sandbox/v1/runs/[0-9a-fA-F-]{36}$")


@dataclass(frozen=True)
class LoggedRequest:
    at: float  # Unix time the request finished
    kind: str  # "upstream" (reached the sandbox) or "traced" (X-Bench-Trace)
    label: str
    method: str
    status: str
    elapsed_ms: float
    queries: int  # -1 when not counted
    idempotency_key: str
    path: str

    @property
    def upstream_call(self) -> str:
        """What kind of API call an upstream request is."""
        if self.method == "GET" and self.path == "/sandbox/v1/runs":
            return "list_runs"
        if self.method == "GET" and _RUN_PATH.match(self.path):
            return "get_run"
        if self.method == "POST" and self.path == "/sandbox/v1/runs":
            return "create_run"
        return f"{self.method} {self.path}"


def read_log(directory: Path, *, since: float = 0.0, until: float = float("inf")):
    """Every logged request that finished within [since, until]."""
    found = []
    for path in sorted(Path(directory).glob("requests-*.log")):
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split(" ", 8)
            if len(parts) != 9:
                continue
            record = LoggedRequest(
                at=float(parts[0]),
                kind=parts[1],
                label=parts[2],
                method=parts[3],
                status=parts[4],
                elapsed_ms=float(parts[5]),
                queries=int(parts[6]),
                idempotency_key=parts[7],
                path=parts[8],
            )
            if since <= record.at <= until:
                found.append(record)
    return found


def upstream_calls(records) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        if record.kind == "upstream":
            counts[record.upstream_call] = counts.get(record.upstream_call, 0) + 1
    return counts
