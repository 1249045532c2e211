"""The figures of `make bench`, each measured next to its reference in the same run.

Each `figure_*` function drives load at the bench server and returns `Row`s for the table.
The harness runs in the bench environment (its own database, the bench server as the API),
so it can also read and write launcher rows directly where that is the honest way to set a
scene (a logged-in session, batch plans).
"""

import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.models import Group
from django.http import HttpRequest

from launcher.bench import load
from launcher.bench.browser import Browser
from launcher.bench.requestlog import read_log, upstream_calls
from launcher.models import TERMINAL_STATUSES, PromptMode, Run, RunStatus, Workflow
from launcher.permissions import OPERATORS_GROUP
from launcher.selectors import models_offered
from launcher.services.catalog import models_sync
from launcher.services.prompts import prompt_resolve, prompt_version_create
from launcher.services.run_sync import runs_refresh_many

BARE_PATH = "/__bench/bare"
# A demo workflow of the sandbox's "slow" kind, with plain inputs (no secrets, no files).
LAUNCH_WORKFLOW_NAME = "Reconcile invoice totals"
LAUNCH_INPUTS = {
    "input:invoice_filename": "INV-2025-0042.pdf",
    "input:invoice_total": "1234.50",
    "input:line_item_count": "12",
    "input:include_tax": "on",
}


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    reference: str
    target: str
    verdict: str  # "pass", "MISS", "info", "not measured"


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts. `full` is what docs/benchmarks.md reports; `quick` is a
    smoke run for development (its figures are not comparable)."""

    wrk_seconds: int
    paced_seconds: int
    viewers_seconds: int
    launches: int
    batch_rows: int
    batch_models: int
    batch_prompts: int

    @classmethod
    def full(cls) -> "Plan":
        return cls(10, 10, 60, 25, 10, 10, 10)

    @classmethod
    def quick(cls) -> "Plan":
        return cls(3, 3, 10, 22, 2, 3, 3)


@dataclass
class Bench:
    base: str
    directory: Path
    plan: Plan
    browser: Browser = None
    rows: list[Row] = field(default_factory=list)
    launched: list[int] = field(default_factory=list)

    def say(self, message: str) -> None:
        print(f"  … {message}", file=sys.stderr, flush=True)

    @property
    def headers(self) -> dict[str, str]:
        """What a logged-in browser sends with an htmx poll."""
        return {"Cookie": self.browser.cookie_header(), "HX-Request": "true"}


# --- Setting the scene ----------------------------------------------------------------------


def operator_session(base: str) -> Browser:
    """A browser logged in as an operator (a session row, as the login form would create)."""
    user, _ = get_user_model().objects.get_or_create(username="bench-operator")
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.save()
    browser = Browser(base, cookies={settings.SESSION_COOKIE_NAME: request.session.session_key})
    page = browser.get("/")  # the launch page hands out the CSRF cookie
    if page.status != 200 or settings.CSRF_COOKIE_NAME not in browser.cookies:
        raise RuntimeError(f"The logged-in launch page answered {page.status}")
    return browser


def _expect_ok(browser: Browser, path: str) -> None:
    answer = browser.get(path, headers={"HX-Request": "true"})
    if answer.status != 200:
        raise RuntimeError(f"GET {path} answered {answer.status}, not 200")


def runs_wait_running(run_ids: list[int], *, timeout: float, say: Callable) -> None:
    """Until every run is `running` upstream (the sandbox schedules them first)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = list(Run.objects.filter(pk__in=run_ids))
        runs_refresh_many(runs, stale_after=None)
        statuses = Run.objects.filter(pk__in=run_ids).values_list("status", flat=True)
        waiting = [s for s in statuses if s != RunStatus.RUNNING]
        if not waiting:
            return
        if any(status in TERMINAL_STATUSES for status in waiting):
            raise RuntimeError(f"A watched run finished early: {sorted(set(waiting))}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Runs still not running after {timeout:.0f} s: {waiting}")
        say(f"waiting for {len(waiting)} runs to leave 'scheduling'")
        time.sleep(3)


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _verdict(ok: bool) -> str:
    return "pass" if ok else "MISS"


# --- Figure 4: launch overhead ----------------------------------------------------------------


def figure_launch(bench: Bench) -> None:
    """POST the launch form N times; our overhead is the POST→redirect time minus the time the
    sandbox itself spent creating the run (timed inside the server, matched by the run's
    idempotency key, which is the form's one-time token)."""
    workflow = Workflow.objects.get(name=LAUNCH_WORKFLOW_NAME)
    browser = bench.browser
    base_form = {
        "csrfmiddlewaretoken": browser.cookies[settings.CSRF_COOKIE_NAME],
        "workflow": str(workflow.pk),
        "model": "",
        "prompt": "stored",
        **LAUNCH_INPUTS,
    }
    timings: list[tuple[str, float]] = []
    count = bench.plan.launches + 1  # the first one warms up (catalog, connections); not counted
    bench.say(f"launching {count} runs one after another")
    started = time.time()
    for number in range(count):
        token = str(uuid.uuid4())
        answer = browser.post("/", {**base_form, "token": token})
        match = re.fullmatch(r"/runs/(\d+)/", answer.location)
        if answer.status != 302 or not match:
            errors = re.findall(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<', answer.body)
            raise RuntimeError(f"Launch answered {answer.status}: {errors[:5]}")
        bench.launched.append(int(match.group(1)))
        if number:
            timings.append((token, answer.elapsed_ms))
    creates = {
        record.idempotency_key: record.elapsed_ms
        for record in read_log(bench.directory, since=started)
        if record.kind == "upstream" and record.upstream_call == "create_run"
    }
    missing = [token for token, _ in timings if token not in creates]
    if missing:
        raise RuntimeError(f"{len(missing)} launches never reached the sandbox")
    totals = [elapsed for _, elapsed in timings]
    sandbox = [creates[token] for token, _ in timings]
    overhead = [elapsed - creates[token] for token, elapsed in timings]
    median = statistics.median(overhead)
    bench.rows.append(
        Row(
            figure=f"4. Launch: POST → redirect, minus the sandbox's create (n={len(timings)})",
            measured=f"overhead median {_ms(median)} (POST→redirect median "
            f"{_ms(statistics.median(totals))})",
            reference=f"sandbox create median {_ms(statistics.median(sandbox))}",
            target="overhead median < 30 ms",
            verdict=_verdict(median < 30),
        )
    )


# --- Figure 1: the status fragment against a bare view ------------------------------------------


def figure_bare_reference(bench: Bench) -> dict:
    """The limit, measured first (while the launched runs are still scheduling)."""
    url = bench.base + BARE_PATH
    bench.say(f"wrk on the bare view ({bench.plan.wrk_seconds} s)")
    closed = load.wrk_run(url, headers=bench.headers, seconds=bench.plan.wrk_seconds)
    bench.say(f"100 req/s on the bare view ({bench.plan.paced_seconds} s)")
    paced = load.paced_run(_fixed_rate_plan(bench, BARE_PATH, rate=100))
    return {"wrk": closed, "paced": paced}


def figure_status(bench: Bench, bare: dict) -> None:
    run_id = bench.launched[0]
    path = f"/runs/{run_id}/status"
    _expect_ok(bench.browser, path)
    bench.say(f"wrk on a running run's status fragment ({bench.plan.wrk_seconds} s)")
    closed = load.wrk_run(bench.base + path, headers=bench.headers, seconds=bench.plan.wrk_seconds)
    bench.say(f"100 req/s on the status fragment ({bench.plan.paced_seconds} s)")
    paced = load.paced_run(_fixed_rate_plan(bench, path, rate=100))
    still = Run.objects.get(pk=run_id).status
    bare_closed, bare_paced = bare["wrk"], bare["paced"]
    ratio = closed.requests_per_second / bare_closed.requests_per_second
    failures = closed.non_2xx_3xx + closed.socket_errors
    bench.rows.append(
        Row(
            figure=f"1a. Status fragment, logged in, run {still} — wrk -c10 throughput",
            measured=f"{closed.requests_per_second:.0f} req/s, p50 {_ms(closed.p50_ms)}, "
            f"p99 {_ms(closed.p99_ms)}; ratio {ratio:.2f}"
            + (f"; {failures} failed" if failures else ""),
            reference=f"bare view {bare_closed.requests_per_second:.0f} req/s, "
            f"p50 {_ms(bare_closed.p50_ms)}, p99 {_ms(bare_closed.p99_ms)}",
            target="ratio ≥ 0.6",
            verdict=_verdict(ratio >= 0.6 and not failures),
        )
    )
    p99 = paced.percentile(0.99)
    bench.rows.append(
        Row(
            figure="1b. Status fragment at a fixed 100 req/s",
            measured=f"p50 {_ms(paced.percentile(0.5))}, p99 {_ms(p99)} "
            f"({paced.completed}/{paced.scheduled} answered"
            + (f", {paced.failures} failed)" if paced.failures else ")"),
            reference=f"bare view p50 {_ms(bare_paced.percentile(0.5))}, "
            f"p99 {_ms(bare_paced.percentile(0.99))}",
            target="p99 < 50 ms",
            verdict=_verdict(p99 < 50 and not paced.failures),
        )
    )


def _fixed_rate_plan(bench: Bench, path: str, *, rate: int) -> dict:
    return {
        "base": bench.base,
        "headers": bench.headers,
        "duration": bench.plan.paced_seconds,
        "workers": 32,
        "streams": [{"path": path, "interval": 1 / rate, "offset": 0.0}],
    }


# --- Figure 3: upstream amplification --------------------------------------------------------


VIEWERS = 50
WATCHED_RUNS = 20


def figure_amplification_run_pages(bench: Bench) -> None:
    """50 viewers, each with one of 20 running runs' page open (it polls its status fragment
    every 2 s): how many calls reach the API?"""
    run_ids = bench.launched[1 : 1 + WATCHED_RUNS]
    interval = settings.RUN_REFRESH_INTERVAL_SECONDS
    seconds = bench.plan.viewers_seconds
    streams = []
    for viewer in range(VIEWERS):
        run_id = run_ids[viewer % len(run_ids)]
        streams.append(
            {
                "first": f"/runs/{run_id}/",
                "path": f"/runs/{run_id}/status",
                "interval": interval,
                "offset": viewer * interval / VIEWERS,
            }
        )
    bench.say(f"{VIEWERS} viewers polling {len(run_ids)} run pages ({seconds} s)")
    started = time.time()
    paced = load.paced_run(
        {
            "base": bench.base,
            "headers": bench.headers,
            "duration": seconds,
            "workers": 64,
            "streams": streams,
        }
    )
    ended = time.time()
    calls = upstream_calls(read_log(bench.directory, since=started, until=ended))
    unfinished = Run.objects.filter(pk__in=run_ids).exclude(status__in=TERMINAL_STATUSES).count()
    per_run_calls = calls.get("get_run", 0) + calls.get("list_runs", 0)
    intervals = seconds / interval
    # A window of 60 s holds 30 intervals but may catch 31 claims (one at each edge).
    budget = len(run_ids) * (int(intervals) + 1)
    others = {name: n for name, n in calls.items() if name not in ("get_run", "list_runs")}
    notes = []
    if paced.failures:
        notes.append(f"{paced.failures} polls failed")
    if others:
        notes.append(f"other calls {others}")
    if unfinished < len(run_ids):
        notes.append(f"only {unfinished}/{len(run_ids)} runs unfinished at the end")
    bench.rows.append(
        Row(
            figure=f"3a. {VIEWERS} viewers × {len(run_ids)} run pages, poll every "
            f"{interval:g} s, {seconds} s",
            measured=f"{per_run_calls} API calls = "
            f"{per_run_calls / (len(run_ids) * intervals):.2f} per run per interval"
            + "".join(f"; {note}" for note in notes),
            reference=f"{paced.completed} polls (p99 {_ms(paced.percentile(0.99))}); "
            f"at most {budget} calls",
            target="≤ 1 call per run per interval",
            verdict=_verdict(per_run_calls <= budget and not notes),
        )
    )


# --- Figure 5: a batch of 1,000 runs ---------------------------------------------------------


def bench_models_fixture(directory: Path, count: int) -> Path:
    """Extra computer-use models for the sandbox, as a fixture file: its demo data offers only
    three, and the batch crosses `count` models. (Loaded with `loaddata`, like any fixture:
    the harness, like the launcher, never imports the sandbox.)"""
    stamp = "2025-01-01T00:00:00Z"
    entries = [
        {
            "model": "sandbox.modelconfiguration",
            "pk": str(uuid.uuid5(uuid.NAMESPACE_URL, f"launcher-bench-model-{number}")),
            "fields": {
                "name": f"Bench agent {number:02d}",
                "description": "A computer-use model added by make bench.",
                "provider": "anthropic",
                "model": f"bench-agent-{number:02d}",
                "is_computer_use_model": True,
                "input_usd_per_mtok": 3.0,
                "output_usd_per_mtok": 15.0,
                "created_at": stamp,
                "updated_at": stamp,
            },
        }
        for number in range(1, count + 1)
    ]
    path = directory / "bench_models.json"
    path.write_text(json.dumps(entries))
    return path


def figure_batch(bench: Bench) -> None:
    """Plan rows × models × prompt versions as one batch, send it with the batch service at
    `BATCH_CONCURRENCY` (8), and the same plan again one run at a time (the reference)."""
    from launcher.services.batches import BatchRow, batch_create, batch_submit

    plan = bench.plan
    models_sync()
    workflow = Workflow.objects.get(name=LAUNCH_WORKFLOW_NAME)
    models = list(models_offered()[: plan.batch_models])
    if len(models) < plan.batch_models:
        raise RuntimeError(f"Only {len(models)} models are offered; the batch needs more")
    user = get_user_model().objects.get(username="bench-operator")
    versions = [
        prompt_version_create(
            workflow=workflow,
            text=f"{workflow.main_prompt}\n(bench variant {number})",
            note=f"bench variant {number}",
            author=user,
        )
        for number in range(1, plan.batch_prompts + 1)
    ]
    prompts = [
        prompt_resolve(workflow=workflow, mode=PromptMode.PINNED, version_id=version.pk)
        for version in versions
    ]
    rows = [
        BatchRow(
            number=number,
            line=None,
            values={
                "invoice_filename": f"INV-2025-{number:04d}.pdf",
                "invoice_total": 100.0 + number,
                "line_item_count": number,
                "include_tax": number % 2 == 0,
            },
        )
        for number in range(1, plan.batch_rows + 1)
    ]
    size = plan.batch_rows * plan.batch_models * plan.batch_prompts
    concurrency = settings.BATCH_CONCURRENCY
    timings = {}
    for label, width in (("sequential", 1), ("concurrent", concurrency)):
        bench.say(f"planning and sending {size} runs, {width} at a time")
        planned_at = time.perf_counter()
        batch = batch_create(
            user=user,
            workflow=workflow,
            models=models,
            prompts=prompts,
            rows=rows,
            token=uuid.uuid4(),
            name=f"bench {label}",
        )
        sending_at = time.perf_counter()
        report = batch_submit(batch=batch, concurrency=width)
        done_at = time.perf_counter()
        if report.accepted != size:
            raise RuntimeError(f"Batch {label}: {report.as_dict()}")
        timings[label] = (sending_at - planned_at, done_at - sending_at)
    plan_s, concurrent_s = timings["concurrent"]
    _, sequential_s = timings["sequential"]
    speedup = sequential_s / concurrent_s
    bench.rows.append(
        Row(
            figure=f"5. Batch of {size} runs ({plan.batch_rows} rows × {plan.batch_models} "
            f"models × {plan.batch_prompts} versions), concurrency {concurrency}",
            measured=f"sent in {concurrent_s:.1f} s ({size / concurrent_s:.0f} runs/s; "
            f"planned in {plan_s:.2f} s); speed-up {speedup:.1f}×",
            reference=f"sequential: {sequential_s:.1f} s ({size / sequential_s:.0f} runs/s)",
            target=f"≥ 6× at concurrency {concurrency}",
            verdict=_verdict(speedup >= 6),
        )
    )


# --- The table -------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    """A Markdown table, aligned so that it also reads well in a terminal."""
    headings = ("figure", "measured", "reference (limit)", "target", "result")
    cells = [headings, *[(r.figure, r.measured, r.reference, r.target, r.verdict) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headings))]

    def line(values) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join(
        [line(cells[0]), line(["-" * w for w in widths]), *[line(row) for row in cells[1:]]]
    )
