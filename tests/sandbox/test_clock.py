"""The sandbox's test-only clock: held, a run stays in its phase until the test moves it on;
refused unless a test turned SANDBOX_TEST_CLOCK on."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from launcher.sandbox import clock, seed

pytestmark = pytest.mark.django_db


def test_it_cannot_be_held_unless_a_test_setting_allows_it(settings):
    assert settings.SANDBOX_TEST_CLOCK is False  # the default: production never holds it
    with pytest.raises(ImproperlyConfigured), clock.held_clock():
        pass


def test_a_held_clock_keeps_a_run_in_its_phase_until_moved_on(api, settings):
    settings.SANDBOX_TEST_CLOCK = True
    with clock.held_clock() as sandbox_clock:
        run = api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)}).json()
        plan_end = 60  # any demo run is over by then

        assert api.get(f"runs/{run['id']}").json()["status"] == "scheduling"
        sandbox_clock.advance(plan_end)
        finished = api.get(f"runs/{run['id']}").json()

    assert finished["status"] == "success"
    assert finished["created_at"] == run["created_at"]
    assert clock._held is None  # released: real time again


def test_the_setting_off_means_real_time_even_inside_a_held_block(settings):
    settings.SANDBOX_TEST_CLOCK = True
    with clock.held_clock() as sandbox_clock:
        sandbox_clock.advance(3600)
        settings.SANDBOX_TEST_CLOCK = False
        assert abs((clock.now() - sandbox_clock.now()).total_seconds()) > 3000
