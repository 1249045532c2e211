"""Why a run failed, as a key that groups alike failures: the batch page's failure clusters.

Two runs that failed for the same reason rarely carry the same message: one says
`Customer 'c-101' not found (request 5f0c…)`, the next `Customer 'c-207' not found (request
91ab…)`. The key strips what varies between runs — quoted values, ids, numbers — so both read
`error:Customer <value> not found (request <id>)` and land in one cluster.

A run that failed a post-run check is keyed by the check's name instead (`check:Has invoice`):
the check says what went wrong more precisely than the agent's closing error.

Pure functions, no imports from the rest of Launcher: `Run.save()` calls `failure_key()` to keep
the stored `Run.failure_key` column true, so clusters are a GROUP BY in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FAILED_STATUSES = ("task_failed", "error")
KEY_MAX_LENGTH = 255
NO_MESSAGE = "(no error message)"

# Order matters: quoted values first (they may hold digits or ids), then ids, then numbers.
_PATTERNS = [
    (re.compile(r'"[^"\n]*"|“[^”\n]*”|`[^`\n]*`'), "<value>"),
    # Single quotes only when they open a value, so that "doesn't" keeps its apostrophe.
    (re.compile(r"(?<![\w'])'[^'\n]*'(?![\w'])"), "<value>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<id>",
    ),
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    # Long hex strings (hashes, request ids) and tokens mixing letters and digits (c-101, r_9f3a).
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b"), "<id>"),
    (re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w]+(?:[-_][\w]+)+\b"), "<id>"),
    (re.compile(r"\b(?=[A-Za-z]*\d)[A-Za-z]+\d[\w]*\b"), "<id>"),
    (re.compile(r"[-+]?\d+(?:[.,:]\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def error_normalise(message: str) -> str:
    """The message with quoted values, ids, URLs, emails and numbers replaced by placeholders."""
    text = str(message)
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text.strip() or NO_MESSAGE


def failed_check_name(post_run_checks: Iterable | None) -> str | None:
    """The name of the first post-run check that failed, if any."""
    for check in post_run_checks or []:
        if isinstance(check, dict) and check.get("status") == "failed":
            name = str(check.get("name") or check.get("type") or check.get("id") or "").strip()
            return name or "unnamed check"
    return None


def failure_key(*, status: str, errors: Iterable | None, post_run_checks: Iterable | None) -> str:
    """The cluster key of a failed run ("" for a run that did not fail)."""
    if status not in FAILED_STATUSES:
        return ""
    check = failed_check_name(post_run_checks)
    if check is not None:
        key = f"check:{check}"
    else:
        messages = [str(e) for e in errors or [] if str(e).strip()]
        key = f"error:{error_normalise(messages[0]) if messages else NO_MESSAGE}"
    return key[:KEY_MAX_LENGTH]


def failure_key_display(key: str) -> tuple[str, str]:
    """(kind, text) for a key: ("Post-run check failed", "Has invoice") or ("Error", "…")."""
    kind, _, text = key.partition(":")
    if kind == "check":
        return "Post-run check failed", text
    return "Error", text
