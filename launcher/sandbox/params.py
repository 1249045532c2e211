"""Reading query strings and JSON bodies the way FastAPI/Pydantic would: every problem becomes a
422 entry whose `loc` names the place (`["query", "limit"]`, `["body", "workflow_id"]`), with
Pydantic's error types and messages. Unknown keys are ignored.

Readers return `ABSENT` when a key was not sent, so PATCH can tell "not sent" from `null`.
"""

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, QueryDict

from launcher.sandbox.errors import Problems, ValidationFailed, validation_item
from launcher.sandbox.parsing import MAX_INT_DIGITS, JsonRefused, json_load


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Any = _Absent()


def json_body(request: HttpRequest, *, required: bool = True) -> dict:
    """The request body as a JSON object; malformed JSON or a non-object → 422."""
    raw = request.body
    if not raw.strip():
        if required:
            raise ValidationFailed([validation_item(("body",), "Field required", "missing")])
        return {}
    try:
        data = json_load(raw)
    except JsonRefused as exc:
        position = exc.pos
        raise ValidationFailed(
            [
                validation_item(
                    ("body", position), "JSON decode error", "json_invalid", ctx={"error": str(exc)}
                )
            ]
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed(
            [
                validation_item(
                    ("body",),
                    "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type",
                    data,
                )
            ]
        )
    if _holds_nul(data):
        # PostgreSQL stores U+0000 in neither text nor jsonb: refused here rather than a 500
        # at the first save. No `input`: the value may be a sensitive one.
        raise ValidationFailed(
            [validation_item(("body",), "Strings must not contain the NUL character", "string_nul")]
        )
    return data


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _enum_message(choices) -> tuple[str, str]:
    quoted = [f"'{choice}'" for choice in choices]
    expected = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"Input should be {expected}", expected


def parse_datetime(text: str) -> datetime | None:
    """ISO 8601 with `Z` or an offset; a naive value is UTC. A `+` decoded as a space (an
    unencoded query string) is restored."""
    candidate = text.strip().replace(" ", "+")
    if not candidate:
        return None
    try:
        value = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class BodyFields:
    """Typed reads from a JSON object, collecting problems under `loc_prefix`."""

    def __init__(self, data: dict, problems: Problems, loc_prefix: tuple = ("body",)):
        self.data = data
        self.problems = problems
        self.prefix = loc_prefix

    def _loc(self, key) -> tuple:
        return (*self.prefix, key)

    def _get(self, key, required: bool):
        if key not in self.data:
            if required:
                self.problems.add(self._loc(key), "Field required", "missing")
            return ABSENT, False
        return self.data[key], True

    def uuid(self, key, *, required=False, nullable=True):
        value, present = self._get(key, required)
        if not present:
            return ABSENT
        if value is None:
            if nullable:
                return None
            self.problems.add(
                self._loc(key), "UUID input should be a string, bytes or UUID object", "uuid_type"
            )
            return ABSENT
        return self._coerce_uuid(self._loc(key), value)

    def _coerce_uuid(self, loc, value):
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                pass
            self.problems.add(
                loc,
                "Input should be a valid UUID, invalid character or length",
                "uuid_parsing",
                value,
            )
            return ABSENT
        self.problems.add(
            loc, "UUID input should be a string, bytes or UUID object", "uuid_type", value
        )
        return ABSENT

    def uuid_list(self, key, *, nullable=True):
        value = self.list(key, nullable=nullable)
        if not value:
            return value
        result = []
        for index, item in enumerate(value):
            parsed = self._coerce_uuid((*self._loc(key), index), item)
            if parsed is not ABSENT:
                result.append(parsed)
        return result

    def string(self, key, *, required=False, nullable=True, min_length=0, max_length=None):
        value, present = self._get(key, required)
        if not present:
            return ABSENT
        if value is None:
            if not nullable:
                self.problems.add(
                    self._loc(key), "Input should be a valid string", "string_type", value
                )
                return ABSENT
            return None
        if not isinstance(value, str):
            self.problems.add(
                self._loc(key), "Input should be a valid string", "string_type", value
            )
            return ABSENT
        # Blank counts as empty: a prompt of spaces is as useless as "" (stricter than Pydantic).
        if len(value.strip()) < min_length:
            self.problems.add(
                self._loc(key),
                f"String should have at least {min_length} character"
                + ("s" if min_length > 1 else ""),
                "string_too_short",
                value,
                {"min_length": min_length},
            )
            return ABSENT
        if max_length is not None and len(value) > max_length:
            self.problems.add(
                self._loc(key),
                f"String should have at most {max_length} characters",
                "string_too_long",
                value,
                {"max_length": max_length},
            )
            return ABSENT
        return value

    def boolean(self, key, *, nullable=True):
        value, present = self._get(key, False)
        if not present:
            return ABSENT
        if value is None:
            if nullable:
                return None
        elif isinstance(value, bool):
            return value
        self.problems.add(self._loc(key), "Input should be a valid boolean", "bool_type", value)
        return ABSENT

    def integer(self, key, *, required=False, gt=None, le=None):
        value, present = self._get(key, required)
        if not present:
            return ABSENT
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.add(self._loc(key), "Input should be a valid integer", "int_type", value)
            return ABSENT
        if gt is not None and value <= gt:
            self.problems.add(
                self._loc(key),
                f"Input should be greater than {gt}",
                "greater_than",
                value,
                {"gt": gt},
            )
            return ABSENT
        if le is not None and value > le:
            self.problems.add(
                self._loc(key),
                f"Input should be less than or equal to {le}",
                "less_than_equal",
                value,
                {"le": le},
            )
            return ABSENT
        return value

    def enum(self, key, choices, *, nullable=True):
        value, present = self._get(key, False)
        if not present:
            return ABSENT
        if value is None and nullable:
            return None
        if value not in choices:
            msg, expected = _enum_message(choices)
            self.problems.add(self._loc(key), msg, "enum", value, {"expected": expected})
            return ABSENT
        return value

    def object(self, key, *, nullable=True):
        value, present = self._get(key, False)
        if not present:
            return ABSENT
        if value is None and nullable:
            return None
        if not isinstance(value, dict):
            self.problems.add(
                self._loc(key), "Input should be a valid dictionary", "dict_type", value
            )
            return ABSENT
        return value

    def list(self, key, *, nullable=True):
        value, present = self._get(key, False)
        if not present:
            return ABSENT
        if value is None and nullable:
            return None
        if not isinstance(value, list):
            self.problems.add(self._loc(key), "Input should be a valid list", "list_type", value)
            return ABSENT
        return value

    def string_list(self, key, *, nullable=True):
        value = self.list(key, nullable=nullable)
        if not value:
            return value
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.problems.add(
                    (*self._loc(key), index), "Input should be a valid string", "string_type", item
                )
                return ABSENT
        return value

    def datetime(self, key, *, nullable=True):
        value, present = self._get(key, False)
        if not present:
            return ABSENT
        if value is None and nullable:
            return None
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed is None:
            self.problems.add(
                self._loc(key), "Input should be a valid datetime", "datetime_parsing", value
            )
            return ABSENT
        return parsed

    def model_metadata(self, key):
        """§2.3: an object with four optional role ids (uuid or null)."""
        value = self.object(key)
        if not value:
            return value
        roles = BodyFields(value, self.problems, self._loc(key))
        result = {}
        for role in MODEL_ROLES:
            parsed = roles.uuid(role)
            if parsed is not ABSENT:
                result[role] = parsed
        return result

    def file_inputs(self, key):
        """§2.4: a list of {filename, content (base64), target_path, cleanup_imports_after_run}."""
        value = self.list(key)
        if not value:
            return value
        files = []
        for index, item in enumerate(value):
            loc = (*self._loc(key), index)
            if not isinstance(item, dict):
                self.problems.add(
                    loc,
                    "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type",
                    item,
                )
                continue
            fields = BodyFields(item, self.problems, loc)
            filename = fields.string("filename", required=True, nullable=False, min_length=1)
            content = fields.string("content", required=True, nullable=False)
            target_path = fields.string("target_path")
            cleanup = fields.boolean("cleanup_imports_after_run")
            decoded = ABSENT
            if isinstance(content, str):
                try:
                    decoded = base64.b64decode(content, validate=True)
                except (binascii.Error, ValueError):
                    self.problems.add(
                        (*loc, "content"),
                        "Value error, content must be base64-encoded file bytes",
                        "value_error",
                    )
            if filename and decoded is not ABSENT:
                files.append(
                    {
                        "filename": filename,
                        "content": decoded,
                        "target_path": target_path or None,
                        "cleanup_imports_after_run": bool(cleanup),
                    }
                )
        return files


MODEL_ROLES = (
    "main_agent_model_id",
    "cache_detection_model_id",
    "fallback_model_1_id",
    "fallback_model_2_id",
)


class QueryFields:
    """Typed reads from a query string, collecting problems under ("query", name)."""

    def __init__(self, query: QueryDict, problems: Problems):
        self.query = query
        self.problems = problems

    def _raw(self, key):
        values = self.query.getlist(key)
        return values[-1] if values else None

    def string(self, key):
        value = self._raw(key)
        if value and "\x00" in value:
            # PostgreSQL cannot compare text with U+0000 in it: a 422, not a 500.
            self.problems.add(
                ("query", key), "Strings must not contain the NUL character", "string_nul"
            )
            return None
        return value if value not in (None, "") else None

    def uuid(self, key):
        value = self._raw(key)
        if value in (None, ""):
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            self.problems.add(
                ("query", key),
                "Input should be a valid UUID, invalid character or length",
                "uuid_parsing",
                value,
            )
            return None

    def integer(self, key, *, default, ge=None, le=None):
        value = self._raw(key)
        if value in (None, ""):
            return default
        try:
            if len(str(value)) > MAX_INT_DIGITS:
                raise ValueError("too long")
            number = int(value)
        except ValueError:
            self.problems.add(
                ("query", key),
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
                value,
            )
            return default
        if ge is not None and number < ge:
            self.problems.add(
                ("query", key),
                f"Input should be greater than or equal to {ge}",
                "greater_than_equal",
                value,
                {"ge": ge},
            )
            return default
        if le is not None and number > le:
            self.problems.add(
                ("query", key),
                f"Input should be less than or equal to {le}",
                "less_than_equal",
                value,
                {"le": le},
            )
            return default
        return number

    def boolean(self, key, *, default=False):
        value = self._raw(key)
        if value in (None, ""):
            return default
        lowered = value.lower()
        if lowered in ("true", "1", "yes", "on", "t", "y"):
            return True
        if lowered in ("false", "0", "no", "off", "f", "n"):
            return False
        self.problems.add(
            ("query", key),
            "Input should be a valid boolean, unable to interpret input",
            "bool_parsing",
            value,
        )
        return default

    def enum(self, key, choices):
        value = self._raw(key)
        if value in (None, ""):
            return None
        if value not in choices:
            msg, expected = _enum_message(choices)
            self.problems.add(("query", key), msg, "enum", value, {"expected": expected})
            return None
        return value

    def enum_list(self, key, choices) -> list[str] | None:
        values = self.query.getlist(key)
        if not values:
            return None
        msg, expected = _enum_message(choices)
        result = []
        for index, value in enumerate(values):
            if value not in choices:
                self.problems.add(("query", key, index), msg, "enum", value, {"expected": expected})
            elif value not in result:
                result.append(value)
        return result

    def datetime(self, key):
        value = self._raw(key)
        if value in (None, ""):
            return None
        parsed = parse_datetime(value)
        if parsed is None:
            self.problems.add(
                ("query", key), "Input should be a valid datetime", "datetime_parsing", value
            )
        return parsed

    def comma_list(self, key, choices) -> list[str] | None:
        """`include=a,b` → ["a", "b"], each checked against `choices`."""
        value = self._raw(key)
        if value in (None, ""):
            return None
        parts = [part.strip() for part in value.split(",") if part.strip()]
        bad = [part for part in parts if part not in choices]
        if bad:
            msg, expected = _enum_message(choices)
            self.problems.add(
                ("query", key),
                f"Unsupported include value(s): {', '.join(bad)}. Allowed: {expected}",
                "value_error",
                value,
            )
            return None
        return list(dict.fromkeys(parts))


def path_uuid(name: str, value: str) -> uuid.UUID:
    """A UUID path parameter; a malformed one is a 422 at ("path", name), like FastAPI."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(
            [
                validation_item(
                    ("path", name),
                    "Input should be a valid UUID, invalid character or length",
                    "uuid_parsing",
                    value,
                )
            ]
        ) from None
