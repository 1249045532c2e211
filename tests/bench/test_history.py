"""The bench's history phase: every page on its list answers on a seeded history (timings are
`make bench`'s business; this only checks the list stays usable as pages join it)."""

import pytest

from launcher.bench import history
from launcher.bench.figures import Row
from launcher.services.history import history_seed
from tests.fake_cyberdesk import serve
from tests.launch_api import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(catalog, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "testserver"]
    history_seed(runs=300, big_batch_runs=0)
    history_seed(runs=600, big_batch_runs=200)
    make_run(catalog.workflow)  # a running run, as the bench's own launches are
    return catalog


def test_every_page_of_the_phase_answers_on_a_seeded_history(seeded, settings, monkeypatch):
    monkeypatch.setattr(history, "SAMPLES", 1)
    with serve(settings):
        scene = history._scene()
        timings = history._time_pages(history._operator_client(), scene)

    assert scene.big_batch is not None and scene.running_run is not None
    assert set(timings) == {page.name for page in history.PAGES}
    assert {name: t.status for name, t in timings.items() if t.status != 200} == {}


def test_a_row_compares_with_the_small_history_and_allows_for_noise():
    page = history.PAGES[0]
    slow = history._row("x", history._Timing(30.0, 9, 200), history._Timing(10.0, 9, 200), page)
    tiny = history._row("x", history._Timing(2.4, 9, 200), history._Timing(1.5, 9, 200), page)
    flat = history._row("x", history._Timing(11.0, 9, 200), history._Timing(10.0, 9, 200), page)

    assert isinstance(slow, Row) and slow.verdict == "MISS" and "3.00× raw" in slow.measured
    assert tiny.verdict == "pass"  # within a millisecond: noise on a shared machine
    assert flat.verdict == "pass"


def test_the_verdict_allows_for_the_machine_being_busier_in_one_phase():
    page = history.PAGES[0]
    busy = history._Timing(30.0, 9, 200, baseline_ms=6.0)  # everything 3× slower right now
    quiet = history._Timing(10.0, 9, 200, baseline_ms=2.0)
    row = history._row("x", busy, quiet, page)
    assert row.verdict == "pass" and "1.00× load-adjusted (3.00× raw)" in row.measured
