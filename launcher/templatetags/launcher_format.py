"""Template filters for how values read on a page: `{% load launcher_format %}`."""

from datetime import timedelta

from django import template

from launcher.selectors import duration_display

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A run's length as people say it ("42s", "3m 05s"); "—" when it is not known yet."""
    return duration_display(value) or "—"


@register.filter
def status_label(value) -> str:
    """A run status as shown ("task_failed" → "Task failed"); unknown values as they are."""
    from launcher.models import RunStatus

    try:
        return str(RunStatus(value).label)
    except ValueError:
        return str(value or "—")
