"""Step 1 of a batch: read the rows (CSV, JSON Lines, or N copies of one set of inputs) and
check each one as the launch form would. Nothing is stored here.

Also what a workflow allows in a batch at all (`batch_blocker`, `batch_prompt_problems`), and
taking secrets out of pasted text before the form shows it again.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from launcher.inputs import (
    SENSITIVE_PREFIX,
    InputKind,
    InputSpec,
    coerce_input,
    contains_nul,
    input_schema_errors,
    input_specs,
)
from launcher.models import Workflow
from launcher.parsing import ParseError, json_parse
from launcher.services.prompts import ResolvedPrompt, prompt_variables

CSV = "csv"
JSONL = "jsonl"

NEEDS_SECRETS = "This workflow needs secrets; launch its runs one at a time."
NEEDS_FILES = "This workflow needs files; launch its runs one at a time."


def max_runs() -> int:
    return settings.BATCH_MAX_RUNS


# --- What a workflow allows ---------------------------------------------------------------------


def batch_blocker(workflow: Workflow) -> str:
    """Why this workflow cannot be launched as a batch ("" when it can): its schema requires a
    sensitive or a file input, which a batch cannot carry (neither is ever stored)."""
    specs = input_specs(workflow.input_schema)
    if any(spec.required and spec.sensitive for spec in specs):
        return NEEDS_SECRETS
    if any(spec.required and spec.kind == InputKind.FILE for spec in specs):
        return NEEDS_FILES
    return ""


def batch_prompt_problems(prompt: ResolvedPrompt, workflow: Workflow) -> list[str]:
    """What makes a prompt unusable in a batch: it fills `{$secret}` variables, and a batch
    carries no secrets."""
    text = prompt.text if prompt.text is not None else workflow.main_prompt
    _, secret = prompt_variables(text or "")
    if not secret:
        return []
    names = ", ".join("{$" + name + "}" for name in sorted(secret))
    return [f"{prompt.description} uses sensitive variables ({names}); a batch cannot fill them."]


# --- Step 1: reading and checking the rows ------------------------------------------------------


@dataclass(frozen=True)
class BatchRow:
    """One row of inputs. `line` is where it starts in the file (CSV: line 1 is the header);
    None for the copies of a "count" batch."""

    number: int  # 1, 2, 3 … among the rows
    line: int | None
    values: dict[str, Any]


@dataclass(frozen=True)
class BadRow:
    number: int
    line: int | None
    messages: list[str]


@dataclass
class RowCheck:
    """The rows of a batch, checked: the good ones, the bad ones with their line numbers and
    messages, and problems of the file as a whole (empty, wrong header, too many rows)."""

    rows: list[BatchRow] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.file_errors and bool(self.rows)


def input_format_detect(text: str) -> str:
    """JSON Lines when the first non-blank character opens an object, else CSV."""
    return JSONL if text.lstrip("\ufeff \t\r\n").startswith("{") else CSV


# A sensitive key where text could not be read: `$name` after a quote, a brace, a comma or a
# space, or at the start of a line ("$5" is a price, not a key).
_SECRET_KEY_LIKE = re.compile(r"(?:^|[\s\"'{,;\t])\$[A-Za-z_]")
# A JSON-style sensitive key ("$name": …) on a line of CSV text: no CSV row has one, but a
# JSON Lines row pasted among CSV lines does.
_SECRET_JSON_KEY = re.compile(r"[\"']\$[A-Za-z_][^\"']*[\"']\s*:")
SECRET_LINE_REMOVED = "(line removed: it held a sensitive input, and could not be read)"
SECRET_TEXT_REMOVED = "(sensitive input)"


def looks_like_secret(text: str) -> bool:
    """Whether unreadable text seems to hold a sensitive (`$name`) key."""
    return bool(_SECRET_KEY_LIKE.search(text))


def csv_dialect(text: str) -> type[csv.Dialect]:
    """The CSV dialect of `text`: comma, semicolon or tab separated, as `csv.Sniffer` reads its
    first lines (spreadsheets in many locales save with ";"). Only the delimiter is taken from
    the sniffer (its quoting guesses are less reliable than Excel's rules); comma when it
    cannot tell."""
    sample = "\n".join(text.splitlines()[:20])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        return csv.excel
    return csv.excel_tab if delimiter == "\t" else _SEMICOLON if delimiter == ";" else csv.excel


class _SEMICOLON(csv.excel):
    delimiter = ";"


def batch_rows_strip_secrets(text: str, input_format: str = "") -> tuple[str, list[str]]:
    """`text` without its sensitive (`$name`) columns or keys, and the names removed.

    A batch never carries secrets, and what was pasted is shown again with the preview: a
    secret typed into the rows must not come back in the page, whatever else is wrong with
    the text. So this reads the text as it is, not as the chosen format says (CSV pasted with
    JSON Lines chosen still loses its `$` columns): CSV text loses the columns — or, when it
    cannot be read as CSV (a field over the parser's limit…) and its header names one, all of
    it; JSON Lines objects lose the keys, and a line that cannot be read but seems to hold a
    `$key` is replaced by a note. The names removed are `$name`, or `$…` when unreadable.
    """
    del input_format  # the text's own shape decides, see above
    body = text.removeprefix("\ufeff")
    if input_format_detect(body) == CSV:
        stripped, removed = _csv_without_secrets(body, original=text)
        return _mask_lines(stripped, removed, _SECRET_JSON_KEY)
    return _jsonl_without_secrets(body)


def _mask_lines(text: str, removed: list[str], pattern: re.Pattern) -> tuple[str, list[str]]:
    lines = text.splitlines()
    masked = [SECRET_LINE_REMOVED if pattern.search(line) else line for line in lines]
    if masked == lines:
        return text, removed
    return "\n".join(masked) + "\n", [*removed, *(["$…"] if "$…" not in removed else [])]


def _csv_without_secrets(body: str, *, original: str) -> tuple[str, list[str]]:
    first_line = body.lstrip("\r\n").split("\n", 1)[0]
    dialect = csv_dialect(body)  # the same delimiter the check reads the rows with
    try:
        table = list(csv.reader(io.StringIO(body), dialect))
    except csv.Error:
        if looks_like_secret(first_line) or looks_like_secret(body):
            return "", ["$…"]
        return original, []
    if not table:
        return original, []
    header = next((row for row in table if any(cell.strip() for cell in row)), table[0])
    secret_columns = [i for i, name in enumerate(header) if name.strip().startswith("$")]
    if not secret_columns:
        return original, []
    removed = [header[i].strip() for i in secret_columns]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=dialect.delimiter, lineterminator="\n")
    for row in table:
        if len(row) != len(header) and any(cell.strip() for cell in row):
            # Its cells do not line up with the header (an unquoted comma…): which one is the
            # secret cannot be told, so the row goes. It is invalid anyway, and says so.
            writer.writerow([SECRET_LINE_REMOVED])
            continue
        writer.writerow([cell for i, cell in enumerate(row) if i not in secret_columns])
    return out.getvalue(), removed


def batch_inputs_strip_secrets(inputs_json: str) -> tuple[str, list[str]]:
    """The N-copies inputs (one JSON object) without sensitive keys. Text that cannot be read
    as a JSON object but seems to hold a `$key` is not shown again at all."""
    if not inputs_json.strip():
        return inputs_json, []
    try:
        value = json_parse(inputs_json)
    except ParseError:
        value = None
    if not isinstance(value, dict):
        return ("", ["$…"]) if looks_like_secret(inputs_json) else (inputs_json, [])
    return _jsonl_without_secrets(inputs_json, single=True)


def _jsonl_without_secrets(text: str, *, single: bool = False) -> tuple[str, list[str]]:
    removed: list[str] = []
    lines = [text] if single else text.splitlines()
    kept = []
    for line in lines:
        try:
            value = json_parse(line) if line.strip() else None
        except ParseError:
            value = None
        if isinstance(value, dict):
            if any(str(k).startswith("$") for k in value):
                removed += [k for k in value if str(k).startswith("$") and k not in removed]
                line = json.dumps(
                    {k: v for k, v in value.items() if not str(k).startswith("$")},
                    ensure_ascii=False,
                )
        elif line.strip() and looks_like_secret(line):
            # Unreadable (or not an object), so its secret cannot be cut out alone: the line
            # goes. It stays a line, so the rows keep their line numbers.
            line = SECRET_LINE_REMOVED
            if "$…" not in removed:
                removed.append("$…")
        kept.append(line)
    if not removed:
        return text, []
    return "\n".join(kept) + ("" if single else "\n"), removed


def batch_rows_check(
    *,
    workflow: Workflow,
    prompts: Sequence[ResolvedPrompt],
    text: str,
    input_format: str = "",
) -> RowCheck:
    """Parse CSV or JSON Lines `text` into rows and validate each one.

    CSV: the header names the input keys; empty cells are missing values; each cell is coerced
    to its schema type as the launch form does ("42" → 42, "true" → true, JSON for objects).
    JSON Lines: one object per line, blank lines skipped. Either way each row is validated
    against the workflow's input schema, and must fill every `{variable}` the chosen prompts use.
    """
    text = text.removeprefix("\ufeff")
    fmt = input_format or input_format_detect(text)
    if not text.strip():
        return RowCheck(file_errors=["The file is empty: add a header line and one row per run."])
    checker = _RowChecker(workflow, prompts)
    check = RowCheck()
    parsed = (
        _parse_jsonl(text, checker, check) if fmt == JSONL else _parse_csv(text, checker, check)
    )
    if check.file_errors:
        return check
    if not parsed:
        check.file_errors.append(
            "The file has a header but no rows."
            if fmt == CSV
            else "The file has no rows: put one JSON object per line."
        )
        return check
    for number, line, values, messages, failed in parsed:
        if values is not None:  # None: the line could not be read at all
            messages = messages + checker.validate(values, skip=failed)
        if messages:
            check.bad_rows.append(BadRow(number=number, line=line, messages=messages))
        else:
            check.rows.append(BatchRow(number=number, line=line, values=values))
    return check


def batch_inputs_check(
    *,
    workflow: Workflow,
    prompts: Sequence[ResolvedPrompt],
    inputs: Mapping[str, Any] | str,
    count: int,
) -> RowCheck:
    """`count` identical runs with one set of inputs (a JSON object, or its text)."""
    if isinstance(inputs, str):
        try:
            inputs = json_parse(inputs) if inputs.strip() else {}
        except ParseError as exc:
            detail = "" if exc.syntax else f" {exc.msg}"
            return RowCheck(file_errors=[f"The inputs are not valid JSON.{detail}"])
    if not isinstance(inputs, Mapping):
        return RowCheck(file_errors=['The inputs must be a JSON object: {"key": value, …}.'])
    if count < 1:
        return RowCheck(file_errors=["Choose at least one run."])
    if count > max_runs():
        return RowCheck(file_errors=[f"A batch is at most {max_runs()} runs."])
    checker = _RowChecker(workflow, prompts)
    values = {str(k): v for k, v in inputs.items() if v is not None}
    messages = checker.check_keys(values.keys()) + checker.validate(values)
    if messages:
        return RowCheck(file_errors=[f"Inputs: {message}" for message in messages])
    return RowCheck(
        rows=[BatchRow(number=n, line=None, values=values) for n in range(1, count + 1)]
    )


class _RowChecker:
    """What every row is held to: the workflow's inputs (as the launch form knows them) and the
    variables of the chosen prompts."""

    def __init__(self, workflow: Workflow, prompts: Sequence[ResolvedPrompt]):
        self.workflow = workflow
        variables: set[str] = set()
        for prompt in prompts:
            text = prompt.text if prompt.text is not None else workflow.main_prompt
            plain, _ = prompt_variables(text or "")
            variables |= plain
        self.prompt_variables = sorted(variables)
        self.specs = {spec.key: spec for spec in input_specs(workflow.input_schema, variables)}

    def check_keys(self, keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        messages = []
        sensitive = [key for key in keys if key.startswith(SENSITIVE_PREFIX)]
        if sensitive:
            messages.append(
                f"Sensitive inputs cannot come from a batch ({', '.join(sensitive)}): secrets "
                "are never stored. Launch runs that need them one at a time."
            )
        files = [
            key
            for key in keys
            if key in self.specs and self.specs[key].kind == InputKind.FILE and key not in sensitive
        ]
        if files:
            messages.append(f"File inputs cannot come from a batch ({', '.join(files)}).")
        unknown = [key for key in keys if key not in self.specs and key not in sensitive]
        if unknown:
            known = ", ".join(k for k, s in self.specs.items() if not s.sensitive) or "none"
            messages.append(
                f"Unknown input keys: {', '.join(unknown)}. This workflow's inputs: {known}."
            )
        return messages

    def coerce_cell(self, key: str, raw: str) -> Any:
        """A CSV cell → its JSON value, as the launch form's field would give it."""
        spec: InputSpec = self.specs[key]
        if raw.strip() == "":
            return None
        if spec.kind == InputKind.BOOLEAN:
            word = raw.strip().lower()
            if word in ("true", "yes", "1", "on"):
                return True
            if word in ("false", "no", "0", "off"):
                return False
            raise ValidationError("Enter true or false.")
        if spec.kind == InputKind.STRING_LIST and raw.lstrip().startswith("["):
            try:
                return json_parse(raw)
            except ParseError:
                raise ValidationError("Enter a JSON list, or one item per line.") from None
        return coerce_input(spec, raw)

    def validate(self, values: Mapping[str, Any], *, skip: Iterable[str] = ()) -> list[str]:
        skip = set(skip)
        by_key, general = input_schema_errors(self.workflow.input_schema, values, skip_keys=skip)
        messages = [f"{key}: {message}" for key, found in by_key.items() for message in found]
        messages += general
        # The runs' inputs are stored before sending, and PostgreSQL stores no U+0000.
        messages += [
            f"{key}: contains a NUL character (\\0), which cannot be stored."
            for key, value in values.items()
            if contains_nul(key) or contains_nul(value)
        ]
        for name in self.prompt_variables:
            if name not in values and name not in by_key and name not in skip:
                messages.append(f"{name}: the prompt uses {{{name}}}; give it a value.")
        return messages


def _parse_csv(text: str, checker: _RowChecker, check: RowCheck) -> list[tuple]:
    reader = csv.reader(io.StringIO(text, newline=""), csv_dialect(text))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        check.file_errors.append("The file is empty: add a header line and one row per run.")
        return []
    header = [name.strip() for name in header]
    problems = []
    if any(not name for name in header):
        problems.append("Line 1 (the header): a column has no name.")
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        problems.append(f"Line 1 (the header): repeated columns: {', '.join(duplicates)}.")
    problems += [f"Line 1 (the header): {m}" for m in checker.check_keys(n for n in header if n)]
    if problems:
        check.file_errors.extend(problems)
        return []

    parsed = []
    line = reader.line_num + 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if len(parsed) >= max_runs():
                check.file_errors.append(_too_many_rows())
                return []
            messages = []
            if len(cells) != len(header):
                messages.append(f"has {len(cells)} values; the header has {len(header)} columns.")
            values: dict[str, Any] = {}
            failed = set()
            for key, raw in zip(header, cells, strict=False):
                try:
                    value = checker.coerce_cell(key, raw)
                except ValidationError as exc:
                    messages.extend(f"{key}: {message}" for message in exc.messages)
                    failed.add(key)
                    continue
                if value is not None:
                    values[key] = value
            parsed.append((len(parsed) + 1, start, values, messages, failed))
    except csv.Error as exc:
        check.file_errors.append(f"Line {reader.line_num}: this is not valid CSV ({exc}).")
        return []
    return parsed


def _parse_jsonl(text: str, checker: _RowChecker, check: RowCheck) -> list[tuple]:
    parsed = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(parsed) >= max_runs():
            check.file_errors.append(_too_many_rows())
            return []
        number = len(parsed) + 1
        try:
            item = json_parse(raw)
        except ParseError as exc:  # its message never quotes the line (it may hold a secret)
            parsed.append((number, line, None, [f"not valid JSON ({exc.msg})."], set()))
            continue
        if not isinstance(item, dict):
            parsed.append(
                (number, line, None, ['must be a JSON object: {"key": value, …}.'], set())
            )
            continue
        values = {str(key): value for key, value in item.items() if value is not None}
        parsed.append((number, line, values, checker.check_keys(values), set()))
    return parsed


def _too_many_rows() -> str:
    return f"The file has more than {max_runs()} rows; a batch is at most {max_runs()} runs."
