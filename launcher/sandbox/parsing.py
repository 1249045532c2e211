"""The sandbox's own guard for JSON from callers: nesting depth and integer length limits.

The launcher has the same guard in `launcher/parsing.py`, but the sandbox stands for the
external API and imports nothing from the launcher (tests/sandbox/test_import_boundary.py): a
shared module would tie the fake API's behaviour to its client's. So it keeps this small copy,
answering with the error the real API (FastAPI/Pydantic) gives for a body it cannot decode.
"""

import json
from typing import Any

# Far deeper than any request body of the API, far below what recursive code after parsing
# (jsonschema, json.dumps) survives.
MAX_DEPTH = 64
MAX_INT_DIGITS = 100


class JsonRefused(ValueError):
    """Not JSON the sandbox will read; `pos` is where the decoder stopped (0 when unknown)."""

    def __init__(self, message: str, pos: int = 0) -> None:
        super().__init__(message)
        self.pos = pos


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonRefused(f"integer longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not valid JSON")


def json_load(raw: str | bytes) -> Any:
    """`json.loads` with the limits above; every failure is a `JsonRefused`."""
    try:
        value = json.loads(raw, parse_int=_bounded_int, parse_constant=_refuse_constant)
    except JsonRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JsonRefused(exc.msg, exc.pos) from None
    except RecursionError:
        raise JsonRefused(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonRefused(str(exc)[:200]) from None
    if _depth(value) > MAX_DEPTH:
        raise JsonRefused(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest
