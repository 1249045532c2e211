"""Run data as a person reads it: inputs (strings unquoted, lists as lists, yes/no, files by
field and file name, secrets only as "set" / "not set"), usage as labelled numbers, and a
structural diff of two JSON values (the compare page's output and input diffs)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

NOT_SET = "not set"
SET = "set"
DIFF_LIMIT = 500  # entries shown in one structural diff; the rest are counted


@dataclass(frozen=True)
class InputRow:
    key: str  # as in the schema; a secret with its "$"
    label: str  # the schema's title, or the key
    kind: str  # text, empty, yes_no, number, list, object, secret, file, none
    value: str = ""  # text, number, yes/no, set / not set, the file name
    items: list[str] = field(default_factory=list)  # list items, or "key: value" lines


def inputs_readable(
    *,
    input_values: dict | None,
    input_schema: dict | None,
    sensitive_input_keys: list[str] | None,
    file_input_fields: list[dict] | None = None,
    file_input_names: list[str] | None = None,
) -> list[InputRow]:
    """A run's inputs in the schema's order (then any others), secrets as set / not set."""
    properties = (input_schema or {}).get("properties") if isinstance(input_schema, dict) else {}
    properties = properties if isinstance(properties, dict) else {}
    values = input_values if isinstance(input_values, dict) else {}
    secrets_set = set(sensitive_input_keys or [])
    files = [f for f in (file_input_fields or []) if isinstance(f, dict)]
    file_fields = {str(f.get("field")): str(f.get("filename", "")) for f in files}

    def title(key: str) -> str:
        prop = properties.get(key)
        found = prop.get("title") if isinstance(prop, dict) else None
        return str(found) if found else key.lstrip("$")

    rows: list[InputRow] = []
    seen: set[str] = set()
    for key in list(properties) + [k for k in values if k not in properties]:
        if key in seen:
            continue
        seen.add(key)
        if key.startswith("$"):
            state = SET if key[1:] in secrets_set else NOT_SET
            rows.append(InputRow(key=key, label=title(key), kind="secret", value=state))
        elif key in file_fields:
            rows.append(InputRow(key=key, label=title(key), kind="file", value=file_fields[key]))
        elif key in values:
            rows.append(_value_row(key, title(key), values[key]))
    for name in sorted(secrets_set):
        if f"${name}" not in seen:
            rows.append(InputRow(key=f"${name}", label=name, kind="secret", value=SET))
    if not files:
        for name in file_input_names or []:
            rows.append(InputRow(key="file", label="File", kind="file", value=str(name)))
    else:
        for key, filename in file_fields.items():
            if key not in seen:
                rows.append(InputRow(key=key, label=title(key), kind="file", value=filename))
    return rows


def _value_row(key: str, label: str, value: Any) -> InputRow:
    if isinstance(value, bool):
        return InputRow(key=key, label=label, kind="yes_no", value="yes" if value else "no")
    if value is None:
        return InputRow(key=key, label=label, kind="none", value="—")
    if isinstance(value, (int, float, Decimal)):
        return InputRow(key=key, label=label, kind="number", value=str(value))
    if isinstance(value, str):
        if value == "":
            return InputRow(key=key, label=label, kind="empty", value="(empty)")
        return InputRow(key=key, label=label, kind="text", value=value)
    if isinstance(value, list):
        return InputRow(key=key, label=label, kind="list", items=[value_text(v) for v in value])
    if isinstance(value, dict):
        lines = [f"{k}: {value_text(v)}" for k, v in value.items()]
        return InputRow(key=key, label=label, kind="object", items=lines)
    return InputRow(key=key, label=label, kind="text", value=str(value))


def value_text(value: Any) -> str:
    """One value as short text: strings unquoted, booleans yes/no, others as compact JSON."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


# --- Usage -------------------------------------------------------------------------------------

# (label, keys tried in order): what the Cyberdesk docs and the sandbox call them.
_USAGE_NUMBERS = (
    ("Agentic steps", ("total_agentic_steps", "agentic_steps")),
    ("Cached steps", ("total_cached_steps", "cached_steps")),
    ("Tokens in", ("input_tokens", "total_input_tokens", "prompt_tokens")),
    ("Tokens out", ("output_tokens", "total_output_tokens", "completion_tokens")),
    ("Billed agentic steps", ("agentic_steps_billed",)),
    ("Billed cached steps", ("cached_steps_billed",)),
)


@dataclass(frozen=True)
class UsageRow:
    label: str
    value: str
    number: float | None = None  # for comparing two runs


def usage_readable(
    usage: Any, cost_usd: Decimal | None, *, finished: bool = True
) -> list[UsageRow]:
    """Usage as labelled numbers; the cost always last ("not reported" when unknown)."""
    usage = usage if isinstance(usage, dict) else {}
    rows = []
    for label, keys in _USAGE_NUMBERS:
        for key in keys:
            value = usage.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append(UsageRow(label=label, value=f"{value:,}", number=float(value)))
                break
    outcome = usage.get("billing_outcome")
    if isinstance(outcome, str) and outcome:
        rows.append(UsageRow(label="Billing", value=outcome.replace("_", " ")))
    if cost_usd is not None:
        rows.append(UsageRow(label="Cost", value=f"${cost_usd:.4f}", number=float(cost_usd)))
    else:
        rows.append(UsageRow(label="Cost", value="not reported" if finished else "—"))
    return rows


# --- Structural diff ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffEntry:
    path: str  # "summary", "items[2].price"; "" for the whole value
    kind: str  # same, changed, added (only on the right), removed (only on the left)
    left: str = ""
    right: str = ""


@dataclass
class StructuralDiff:
    entries: list[DiffEntry]
    hidden: int = 0  # entries beyond DIFF_LIMIT

    @property
    def changed(self) -> int:
        return sum(1 for entry in self.entries if entry.kind != "same")

    @property
    def identical(self) -> bool:
        return self.changed == 0 and self.hidden == 0


_MISSING = object()


def structural_diff(left: Any, right: Any) -> StructuralDiff:
    """Leaf by leaf: each path of either value, and whether it is the same on both sides."""
    flat_left, flat_right = dict(_flatten(left)), dict(_flatten(right))
    paths = list(flat_left) + [path for path in flat_right if path not in flat_left]
    entries = []
    for path in paths:
        a, b = flat_left.get(path, _MISSING), flat_right.get(path, _MISSING)
        if a is _MISSING:
            entries.append(DiffEntry(path, "added", right=value_text(b)))
        elif b is _MISSING:
            entries.append(DiffEntry(path, "removed", left=value_text(a)))
        elif a == b and type(a) is type(b):
            entries.append(DiffEntry(path, "same", value_text(a), value_text(b)))
        else:
            entries.append(DiffEntry(path, "changed", value_text(a), value_text(b)))
    hidden = max(0, len(entries) - DIFF_LIMIT)
    return StructuralDiff(entries=entries[:DIFF_LIMIT], hidden=hidden)


def _flatten(value: Any, path: str = ""):
    if value is None and not path:
        return
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]")
    else:
        yield path, value
