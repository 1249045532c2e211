"""Template filters for how values read on a page: `{% load launcher_format %}`."""

from datetime import datetime, timedelta

from django import template

from launcher.selectors import duration_display

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A run's length as people say it ("42s", "3m 05s"); "—" when it is not known yet."""
    return duration_display(value) or "—"


@register.filter
def parse_iso(value: str | None) -> datetime | None:
    """An ISO 8601 string kept in JSON (e.g. `Run.api_notes`) as a datetime for time.html."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


@register.filter
def status_label(value) -> str:
    """A run status as shown ("task_failed" → "Task failed"); unknown values as they are."""
    from launcher.models import RunStatus

    try:
        return str(RunStatus(value).label)
    except ValueError:
        return str(value or "—")
