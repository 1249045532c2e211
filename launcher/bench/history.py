"""The history phase of `make bench` (issue 13, target 1 and 4): is every page as fast with a
long history as with a short one, and as fast with the API down as with it up?

1. `seed_history --runs 500` (the command anyone can run), then each page of `PAGES` is timed
   in this process (Django's test client, logged in as an operator: no network, no load
   generator, only the page's own work) — the reference;
2. `seed_history --runs N` (50,000 on SQLite; on PostgreSQL `--history-runs`, 1,000,000 for the
   full figure), then the same pages again: the ratio beside the 1.5× target;
3. the same pages with the API unreachable (a closed loopback port): the ratio beside 1.5×,
   and whether the page says what is unavailable.

A page joins the phase with one line in `PAGES`: a name and a function from the `Scene` (the
ids a page needs) to its URL.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings

from launcher.bench.figures import Bench, Row
from launcher.bench.server import free_port
from launcher.models import TERMINAL_STATUSES, Batch, ModelOption, Run, RunStatus, Workflow
from launcher.permissions import OPERATORS_GROUP
from launcher.selectors import RunFilters, runs_for_list, runs_page
from launcher.services.history import BIG_BATCH_NAME, HISTORY_USERS

BASELINE_RUNS = 500
SQLITE_RUNS = 50_000
POSTGRES_RUNS = 100_000  # seeding a million takes a while: `--history-runs 1000000`
TARGET_RATIO = 1.5
# Pages of a few milliseconds jitter by more than half their time on a shared machine; a page
# within this much of its reference passes whatever the ratio (said beside the figure).
NOISE_MS = 1.0
SAMPLES = 9
# A logged-in request that does little (session, user, permission, one lookup, a 404), timed
# before each sample: what the machine's load costs any request at that moment.
BASELINE_URL = "/runs/0/"
SAMPLE_SECONDS = 4.0  # a slow page (the export of a big batch) gets fewer samples
DEEP_PAGES = 20


@dataclass(frozen=True)
class Scene:
    """The ids the pages need, looked up after each seeding (same rows in every phase)."""

    workflow: str
    model: str
    run: int
    running_run: int | None
    small_batch: int
    big_batch: int | None
    deep_cursor: str


@dataclass(frozen=True)
class Page:
    name: str
    url: Callable[[Scene], str | None]  # None: not measured in this scene
    htmx: bool = False
    grows_with_batch: bool = False  # its content is the batch: compared with a small batch


PAGES: list[Page] = [
    Page("runs list", lambda s: "/runs/"),
    Page(f"runs list, {DEEP_PAGES} pages deep", lambda s: f"/runs/?before={s.deep_cursor}"),
    Page("runs list, page=20 (numbered link)", lambda s: "/runs/?page=20"),
    Page("runs list, status=error", lambda s: "/runs/?status=error"),
    Page("runs list, workflow + model", lambda s: f"/runs/?workflow={s.workflow}&model={s.model}"),
    Page("runs list, text search", lambda s: "/runs/?q=customer"),
    Page("runs list poll fragment", lambda s: "/runs/", htmx=True),
    Page("run page (finished)", lambda s: f"/runs/{s.run}/"),
    Page("run status fragment (finished)", lambda s: f"/runs/{s.run}/status", htmx=True),
    Page("run page (running)", lambda s: s.running_run and f"/runs/{s.running_run}/"),
    Page(
        "run status fragment (running)",
        lambda s: s.running_run and f"/runs/{s.running_run}/status",
        htmx=True,
    ),
    Page("batches list", lambda s: "/batches/"),
    Page("batch page (120-run batch)", lambda s: f"/batches/{s.small_batch}/"),
    Page(
        "batch progress fragment (120-run batch)",
        lambda s: f"/batches/{s.small_batch}/",
        htmx=True,
    ),
    Page("batch export (120-run batch)", lambda s: f"/batches/{s.small_batch}/export.csv"),
    Page(
        "batch page (10,000-run batch)",
        lambda s: s.big_batch and f"/batches/{s.big_batch}/",
        grows_with_batch=True,
    ),
    Page(
        "batch progress fragment (10,000-run batch)",
        lambda s: s.big_batch and f"/batches/{s.big_batch}/",
        htmx=True,
        grows_with_batch=True,
    ),
    Page(
        "batch export (10,000-run batch)",
        lambda s: s.big_batch and f"/batches/{s.big_batch}/export.csv",
        grows_with_batch=True,
    ),
    Page("prompts index", lambda s: "/prompts/"),
    Page("prompts page, per-version numbers", lambda s: f"/prompts/{s.workflow}/"),
    Page("launch page", lambda s: "/"),
]


def history_runs_default() -> int:
    return POSTGRES_RUNS if connection.vendor == "postgresql" else SQLITE_RUNS


def figure_history(bench: Bench, *, runs: int) -> None:
    # The baseline is a 404 by design: one warning line each is noise here.
    logging.getLogger("django.request").setLevel(logging.ERROR)
    client = _operator_client()
    bench.say(f"history phase: seeding {BASELINE_RUNS} finished runs")
    _seed(BASELINE_RUNS, big_batch=0)
    small = _time_pages(client, _scene())
    bench.say(f"history phase: seeding up to {runs} finished runs (minutes on a big history)")
    started = time.monotonic()
    _seed(runs, big_batch=10_000)
    seeded_in = time.monotonic() - started
    scene = _scene()
    large = _time_pages(client, scene)
    bench.say("history phase: the same pages with the API unreachable")
    with override_settings(CYBERDESK_BASE_URL=f"http://127.0.0.1:{free_port()}/sandbox"):
        down = _time_pages(client, scene, say_unavailable=True)
    label = f"{runs:,}"
    for page in PAGES:
        if page.name not in large:
            continue
        reference_name = page.name
        if page.grows_with_batch:  # no 10,000-run batch in a 500-run history
            reference_name = page.name.replace("10,000-run batch", "120-run batch")
        reference = small.get(reference_name)
        measured = large[page.name]
        if reference is None:
            continue
        bench.rows.append(_row(f"H1. {page.name}: {label} runs", measured, reference, page))
        if page.name in down:
            bench.rows.append(
                _row(f"H2. {page.name}: API down, {label} runs", down[page.name], measured, page)
            )
    bench.rows.append(
        Row(
            figure=f"H0. seed_history --runs {label}",
            measured=f"{seeded_in:.0f} s ({runs / max(seeded_in, 0.001):,.0f} runs/s)",
            reference=f"{Run.objects.count():,} runs in the database",
            target="(set-up)",
            verdict="info",
        )
    )


@dataclass(frozen=True)
class _Timing:
    median_ms: float
    samples: int
    status: int
    says_unavailable: bool | None = None
    baseline_ms: float = 0.0  # the logged-in 404 timed beside each sample (machine load)

    @property
    def relative(self) -> float:
        """The page's time in units of the baseline measured at the same moment."""
        return self.median_ms / self.baseline_ms if self.baseline_ms else self.median_ms


def _row(figure: str, measured: _Timing, reference: _Timing, page: Page) -> Row:
    # Phases are minutes apart and this machine's load swings by several times in that span,
    # so the verdict uses each page's time relative to a do-little logged-in request timed
    # beside it (`BASELINE_URL`); the raw times are shown too.
    ratio = measured.relative / reference.relative if reference.relative else float("inf")
    raw = measured.median_ms / reference.median_ms if reference.median_ms else float("inf")
    ok = measured.status in (200, 204) and (
        ratio <= TARGET_RATIO or measured.median_ms - reference.median_ms < NOISE_MS
    )
    said = ""
    if measured.says_unavailable is not None:
        said = "; says Cyberdesk is unreachable" if measured.says_unavailable else ""
    basis = "120-run batch at 500 runs" if page.grows_with_batch else "reference"
    return Row(
        figure=figure,
        measured=f"{measured.median_ms:.1f} ms (n={measured.samples}, HTTP {measured.status}); "
        f"{ratio:.2f}× load-adjusted ({raw:.2f}× raw){said}",
        reference=f"{basis}: {reference.median_ms:.1f} ms",
        target=f"≤ {TARGET_RATIO}× (or < +{NOISE_MS:.0f} ms)",
        verdict="pass" if ok else "MISS",
    )


def _seed(runs: int, *, big_batch: int) -> None:
    call_command(
        "seed_history", "--runs", str(runs), "--big-batch", str(big_batch), stdout=StringIO()
    )


def _scene() -> Scene:
    users = get_user_model().objects.filter(username__in=HISTORY_USERS)
    history = Run.objects.filter(launched_by__in=users)
    workflow = Workflow.objects.order_by("name").first()
    model = ModelOption.objects.filter(runs__isnull=False).order_by("name").first()
    run = history.filter(status=RunStatus.SUCCESS, batch__isnull=True).order_by("pk").first()
    running = Run.objects.exclude(status__in=TERMINAL_STATUSES).order_by("pk").first()
    small = Batch.objects.filter(name="History batch 1").first()
    big = Batch.objects.filter(name=BIG_BATCH_NAME).first()
    runs = runs_for_list(RunFilters())
    page = runs_page(runs)
    for _ in range(DEEP_PAGES - 1):
        if page.older is None:
            break
        page = runs_page(runs, before=page.older)
    return Scene(
        workflow=str(workflow.pk),
        model=str(model.pk) if model else "default",
        run=run.pk,
        running_run=running.pk if running else None,
        small_batch=small.pk,
        big_batch=big.pk if big else None,
        deep_cursor=str(page.older or ""),
    )


def _operator_client() -> Client:
    user, _ = get_user_model().objects.get_or_create(username="bench-history-operator")
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return client


def _time_pages(client: Client, scene: Scene, *, say_unavailable: bool = False) -> dict:
    timings = {}
    for page in PAGES:
        url = page.url(scene)
        if not url:
            continue
        headers = {"HX-Request": "true"} if page.htmx else {}
        answer = client.get(url, headers=headers)  # warm: caches, the session, connections
        samples, baselines = [], []
        deadline = time.monotonic() + SAMPLE_SECONDS
        while len(samples) < SAMPLES and (len(samples) < 3 or time.monotonic() < deadline):
            started = time.perf_counter()
            client.get(BASELINE_URL)
            baselines.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            answer = client.get(url, headers=headers)
            if answer.streaming:
                b"".join(answer.streaming_content)
            samples.append((time.perf_counter() - started) * 1000)
        says = None
        if say_unavailable and not answer.streaming:
            says = "unreachable" in answer.content.decode(errors="replace")
        timings[page.name] = _Timing(
            statistics.median(samples),
            len(samples),
            answer.status_code,
            says,
            baseline_ms=statistics.median(baselines),
        )
    return timings
