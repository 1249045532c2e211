"""Django's "async unsafe" guard stays on outside the browser tests (tests/browser/conftest.py
lifts it for their package only), so a sync ORM call inside an event loop fails the suite."""

import asyncio
import os

import pytest
from django.core.exceptions import SynchronousOnlyOperation

from launcher.models import Run

pytestmark = pytest.mark.django_db


def test_the_orm_still_refuses_to_run_inside_an_event_loop():
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ

    async def count_runs():
        return Run.objects.count()

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(count_runs())
