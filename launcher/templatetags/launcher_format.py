"""Template filters for how values read on a page: `{% load launcher_format %}`."""

from datetime import UTC, datetime, timedelta

from django import template
from django.utils.html import format_html

from launcher.selectors import duration_display

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A run's length as people say it ("42s", "3m 05s"); "—" when it is not known yet."""
    return duration_display(value) or "—"


@register.filter
def local_time(value: datetime | None, style: str = "") -> str:
    """The same `<time>` as `launcher/time.html`, for tables: a filter renders in a fraction of
    an include's time, and a 50-row list has one per row. `style="compact"` adds
    `data-compact` (app.js: the moment only, "… ago" in the tooltip)."""
    if not value:
        return "—"
    moment = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" data-local-time{}>{} UTC</time>',
        moment.isoformat(),
        " data-compact" if style == "compact" else "",
        moment.strftime("%Y-%m-%d %H:%M"),
    )


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
