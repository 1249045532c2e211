"""Figures of the polls against the logged-in stack (issue 13, target 3; target 2 is figures 2a
and 2b, in `figures.figure_runs_list`):

- 1d/2d: a poll that finds nothing new — it sends back the fingerprint of what the page holds
  (`X-Poll-Version`, as htmx does from the region's `hx-headers`) and is answered 204 without
  rendering — as a ratio of figure 1c (target ≥ 0.9).

Each is wrk -c10 against the bench server, like figures 1 and 2, in the same run as 1c.
"""

from __future__ import annotations

import re

from launcher.bench import load
from launcher.bench.figures import Bench, Row, _ms, _verdict
from launcher.models import TERMINAL_STATUSES, Run

_VERSION = re.compile(r'"X-Poll-Version": "([0-9a-f]+)"')


def _version(bench: Bench, path: str) -> str:
    """The fingerprint the page's polled region carries."""
    answer = bench.browser.get(path)
    match = _VERSION.search(answer.body)
    if answer.status != 200 or not match:
        raise RuntimeError(f"GET {path} answered {answer.status} with no poll version")
    return match.group(1)


def _row(figure: str, result: load.WrkResult, stack: load.WrkResult, target: float) -> Row:
    ratio = result.requests_per_second / stack.requests_per_second
    failures = result.non_2xx_3xx + result.socket_errors
    return Row(
        figure=figure,
        measured=f"{result.requests_per_second:.0f} req/s, p50 {_ms(result.p50_ms)}, "
        f"p99 {_ms(result.p99_ms)}; ratio {ratio:.2f}"
        + (f"; {failures} failed" if failures else ""),
        reference=f"logged-in stack (1c) {stack.requests_per_second:.0f} req/s",
        target=f"ratio ≥ {target}",
        verdict=_verdict(ratio >= target and not failures),
    )


def figure_polls_unchanged(bench: Bench, reference: dict) -> None:
    """Run right after figure 1, while the launched runs are still running (their pages poll)."""
    stack = reference["stack"]
    seconds = bench.plan.wrk_seconds
    running = (
        Run.objects.filter(pk__in=bench.launched)
        .exclude(status__in=TERMINAL_STATUSES)
        .order_by("pk")
        .first()
    )
    if running is None:
        raise RuntimeError("no launched run is still running")
    version = _version(bench, f"/runs/{running.pk}/")
    bench.say(f"wrk on the status poll with nothing new ({seconds} s)")
    status = load.wrk_run(
        bench.base + f"/runs/{running.pk}/status",
        headers={**bench.headers, "X-Poll-Version": version},
        seconds=seconds,
    )
    bench.rows.append(
        _row("1d. Status poll with nothing new (204), against 1c", status, stack, 0.9)
    )

    running_list = "/runs/?status=running"
    version = _version(bench, running_list)
    bench.say(f"wrk on the runs list poll with nothing new ({seconds} s)")
    unchanged = load.wrk_run(
        bench.base + running_list,
        headers={**bench.headers, "X-Poll-Version": version},
        seconds=seconds,
    )
    bench.rows.append(
        _row("2d. Runs list poll with nothing new (204), against 1c", unchanged, stack, 0.9)
    )
