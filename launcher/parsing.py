"""Untrusted text → values, in one place: every form, parser and endpoint of the launcher that
reads JSON, an integer or a URL from outside goes through these functions.

Why one place: Python's own parsers fail in ways a view does not expect. `json.loads` raises
`RecursionError` on deeply nested input (1,000 × `[`), and a plain `ValueError` — not a
`JSONDecodeError`, so without `.msg` — on an integer over 4,300 digits; `int()` raises
`ValueError` on a long digit string too; and a value that parses can still blow the stack
further on (jsonschema, templates, `json.dumps`). Each of those was a 500. Here every failure
is a `ParseError` (a `ValueError`, so existing `except ValueError` handlers keep working) whose
message describes the problem and never quotes the input (it may hold a secret).

The sandbox stands for the external API and imports nothing from the launcher (see
`tests/sandbox/test_import_boundary.py`), so it keeps its own small equivalent in
`launcher/sandbox/parsing.py`: sharing this module would tie the fake API's behaviour to the
client's, which is what the boundary exists to prevent.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

# Deeper than any real workflow input, run output or webhook body (they are a few levels), and
# far below what the recursive code after parsing (jsonschema, json.dumps, templates) survives.
MAX_JSON_DEPTH = 64
# Longer integers are refused: no id, count or input value needs them, and Python refuses to
# convert more than 4,300 digits anyway (sys.get_int_max_str_digits).
MAX_INT_DIGITS = 100
# The largest id a database integer column holds (SQLite raises OverflowError beyond it).
MAX_ID = 2**63 - 1


class ParseError(ValueError):
    """Input that cannot be read. `msg` is safe to show (it never repeats the input);
    `lineno` / `colno` locate a JSON syntax error (1-based; 0 when unknown); `syntax` is False
    when the text is well-formed but over a limit (too deep, a number too long…)."""

    def __init__(self, msg: str, *, lineno: int = 0, colno: int = 0, pos: int = 0) -> None:
        super().__init__(msg)
        self.msg = msg
        self.lineno = lineno
        self.colno = colno
        self.pos = pos
        self.syntax = lineno > 0


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ParseError(f"A number is too long (over {MAX_INT_DIGITS} digits).")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ParseError("A number is too large.")
    return value


def _refuse_constant(name: str) -> Any:
    # NaN / Infinity are not JSON: PostgreSQL's jsonb refuses them, and so does the API.
    raise ParseError(f"{name} is not a JSON number.")


def json_parse(
    text: str | bytes | bytearray,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    replace_surrogates: bool = False,
) -> Any:
    """Parse JSON text, refusing what later code could not cope with: nesting deeper than
    `max_depth`, integers over `MAX_INT_DIGITS` digits, numbers that overflow to infinity,
    NaN / Infinity, bytes that are not UTF-8, and lone surrogate escapes ("\\ud800": no UTF-8
    page or database can hold them). With `replace_surrogates` (what another system sent us,
    which we must keep), those become U+FFFD instead. Raises `ParseError`."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The text is not UTF-8.") from None
    try:
        value = json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_refuse_constant,
        )
    except ParseError:
        raise
    except json.JSONDecodeError as exc:
        raise ParseError(exc.msg, lineno=exc.lineno, colno=exc.colno, pos=exc.pos) from None
    except RecursionError:
        raise ParseError(_too_deep(max_depth)) from None
    except ValueError:  # e.g. a surrogate the decoder refuses
        raise ParseError("The text is not valid JSON.") from None
    if json_depth(value) > max_depth:
        raise ParseError(_too_deep(max_depth))
    if _SURROGATE_ESCAPE in text.lower() and _has_surrogate(value):
        if not replace_surrogates:
            raise ParseError("The JSON holds an unpaired surrogate escape (\\ud800–\\udfff).")
        value = _without_surrogates(value)
    return value


_SURROGATE_ESCAPE = "\\ud"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_lone_surrogate_text(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _has_surrogate(value: Any) -> bool:
    # Depth is bounded by now, so recursion is safe.
    if isinstance(value, str):
        return _is_lone_surrogate_text(value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


def text_without_surrogates(text: str) -> str:
    """The text with each lone surrogate replaced by U+FFFD (what UTF-8 decoders do)."""
    if not _is_lone_surrogate_text(text):
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return text_without_surrogates(value)
    if isinstance(value, dict):
        return {text_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    return value


def _too_deep(max_depth: int) -> str:
    return f"The JSON is nested too deeply (more than {max_depth} levels)."


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed value (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def json_is_safe(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether an already-built value (e.g. from a CSV cell or a form) nests within bounds."""
    return json_depth(value) <= max_depth


def int_parse(
    value: Any, *, min_value: int | None = None, max_value: int | None = MAX_ID
) -> int | None:
    """An integer from a query string or form value, or None for anything that is not one:
    empty, not ASCII decimal digits (`str.isdigit` accepts "²", which `int()` refuses), longer
    than `MAX_INT_DIGITS`, or outside [min_value, max_value]. A leading "-" is allowed only
    when `min_value` permits negatives. Never raises."""
    if value is None:
        return None
    text = str(value).strip()
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if not digits or not digits.isascii() or not digits.isdecimal():
        return None
    if len(digits) > MAX_INT_DIGITS:
        return None
    number = -int(digits) if negative else int(digits)
    if min_value is not None and number < min_value:
        return None
    if max_value is not None and number > max_value:
        return None
    return number


def id_parse(value: Any) -> int | None:
    """A database id (1 … 2**63 - 1) from outside, or None."""
    return int_parse(value, min_value=1, max_value=MAX_ID)


def url_is_safe(url: Any, *, http_origin: str | None = None) -> bool:
    """Whether a URL from the API may be handed to a browser: `https:` with a host, or `http:`
    only on `http_origin` (the local sandbox's `scheme://host[:port]`). Everything else —
    `javascript:`, `data:`, `file:`, scheme-relative `//host`, control characters — is not."""
    if not isinstance(url, str) or not url or len(url) > 8192:
        return False
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        return False  # browsers strip tabs/newlines inside schemes ("java\tscript:")
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.netloc or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme == "http" and http_origin:
        origin = urlsplit(http_origin)
        return origin.scheme == "http" and parts.netloc.lower() == origin.netloc.lower()
    return False
