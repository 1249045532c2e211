"""A workflow's `input_schema` → the launch form's input fields, and the typed values back into
the three parts of a run request (`input_values`, `sensitive_input_values`, `file_inputs`).

The schema is JSON Schema; each sensitive root key appears in it with a `$` prefix (spec §3.6:
`sensitive_input_values.api_key` ⇒ property `$api_key`). The form offers one field per root
property, plus one per variable the resolved prompt uses that the schema lacks (`{name}` → a text
field, `{$name}` → a password field).

Validation happens in two steps, both on the server:

1. each field turns the posted string into its JSON type (`coerce_input`), so "12" becomes 12
   and one-per-line text becomes a list;
2. the effective payload — `input_values` plus the sensitive values under their `$` keys, as the
   API builds it — is validated against the schema with jsonschema (`input_schema_errors`), and
   every error is mapped back to the field it belongs to.

Error messages are written from the failed keyword, never from the value, so a secret typed in a
password field is never echoed back in an error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import jsonschema
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils.text import slugify

from launcher.parsing import MAX_INT_DIGITS, ParseError, json_parse

SENSITIVE_PREFIX = "$"
FIELD_PREFIX = "input:"  # form field names are "input:<schema key>", apart from workflow/model/…
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$.\-]+")


class InputKind(StrEnum):
    STRING = "string"
    TEXT = "text"  # a long string: a textarea
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ENUM = "enum"
    STRING_LIST = "string_list"  # an array of strings (or numbers), one item per line
    JSON = "json"  # objects and anything else: typed as JSON
    FILE = "file"


@dataclass(frozen=True)
class InputSpec:
    """One input of a workflow, as the launch form shows it."""

    key: str  # the key as the schema names it: "customer_id", or "$api_key" when sensitive
    kind: InputKind
    required: bool = False
    description: str = ""
    title: str = ""
    default: Any = None
    has_default: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()  # enum values, in schema order
    item_kind: InputKind = InputKind.STRING  # for STRING_LIST: the type of each line
    in_schema: bool = True  # False: only the prompt uses it
    schema: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def sensitive(self) -> bool:
        return self.key.startswith(SENSITIVE_PREFIX)

    @property
    def api_key(self) -> str:
        """The key in the request body: the schema key without its `$`."""
        return self.key.removeprefix(SENSITIVE_PREFIX)

    @property
    def field_name(self) -> str:
        """The form field's name, "input:<key>". A key with characters that do not belong in
        an HTML id (spaces, slashes…) gets a slug with a short hash instead, so the label's
        `for` and `aria-describedby` keep working."""
        if _PLAIN_KEY.fullmatch(self.key):
            return FIELD_PREFIX + self.key
        slug = slugify(self.key.replace(SENSITIVE_PREFIX, "secret-")) or "field"
        return f"{FIELD_PREFIX}{slug}-{_short_hash(self.key)}"

    def form_field(self) -> forms.Field:
        """The Django form field for this input (required-ness is checked by jsonschema, so
        every field is `required=False` here; the HTML `required` attribute still says it)."""
        return _build_form_field(self)


@dataclass(frozen=True)
class FileUpload:
    """A file the operator attached, before it is handed to the client as a `FileInput`."""

    key: str
    filename: str
    content: bytes


@dataclass
class InputPayload:
    """The three parts of a run request built from the form's cleaned values."""

    input_values: dict[str, Any] = field(default_factory=dict)
    sensitive_input_values: dict[str, Any] = field(default_factory=dict)
    files: list[FileUpload] = field(default_factory=list)

    def effective(self) -> dict[str, Any]:
        """What the API validates against the schema: inputs plus `$`-prefixed secrets."""
        payload = dict(self.input_values)
        for key, value in self.sensitive_input_values.items():
            payload[SENSITIVE_PREFIX + key] = value
        return payload


# --- The schema → specs ------------------------------------------------------------------------


def input_specs(
    schema: Mapping[str, Any] | None, prompt_variables: Iterable[str] = ()
) -> list[InputSpec]:
    """The inputs to offer: the schema's root properties in schema order, then any variable of
    the resolved prompt (`name`, `$name`, `patient.dob`) whose root key the schema lacks."""
    schema = schema if isinstance(schema, Mapping) else {}
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    required = set(required) if isinstance(required, list) else set()

    specs = [
        _spec_from_property(str(key), prop if isinstance(prop, Mapping) else {}, key in required)
        for key, prop in properties.items()
    ]
    known = {spec.key for spec in specs}
    for variable in prompt_variables:
        root = _variable_root(variable)
        if not root or root in known:
            continue
        known.add(root)
        # A dotted or indexed variable ({patient.dob}) needs a structured value.
        structured = root != variable.strip()
        specs.append(
            InputSpec(
                key=root,
                kind=InputKind.JSON if structured else InputKind.STRING,
                in_schema=False,
                description="Used by the prompt; the workflow's input schema does not list it.",
            )
        )
    return specs


def _variable_root(variable: str) -> str:
    variable = variable.strip()
    prefix = SENSITIVE_PREFIX if variable.startswith(SENSITIVE_PREFIX) else ""
    rest = variable.removeprefix(SENSITIVE_PREFIX)
    root = re.split(r"[.\[]", rest, maxsplit=1)[0].strip()
    return prefix + root if root else ""


def _is_file_property(prop: Mapping[str, Any]) -> bool:
    return (
        prop.get("type") == "file"
        or prop.get("format") in {"binary", "file", "data-url"}
        or "contentMediaType" in prop
        or prop.get("contentEncoding") == "base64"
        or prop.get("x-file") is True
    )


def _schema_type(prop: Mapping[str, Any]) -> str | None:
    """The property's single non-null type (["integer", "null"] counts as "integer")."""
    declared = prop.get("type")
    if isinstance(declared, list):
        non_null = [t for t in declared if t != "null"]
        return non_null[0] if len(non_null) == 1 else None
    return declared if isinstance(declared, str) else None


def _spec_from_property(key: str, prop: Mapping[str, Any], required: bool) -> InputSpec:
    kind = InputKind.JSON
    item_kind = InputKind.STRING
    declared = _schema_type(prop)
    enum = prop.get("enum")
    if _is_file_property(prop):
        kind = InputKind.FILE
    elif isinstance(enum, list) and enum:
        kind = InputKind.ENUM
    elif declared == "string":
        long_text = prop.get("format") == "textarea" or (prop.get("maxLength") or 0) > 500
        kind = InputKind.TEXT if long_text else InputKind.STRING
    elif declared in ("number", "integer", "boolean"):
        kind = InputKind(declared)
    elif declared == "array":
        items = prop.get("items") if isinstance(prop.get("items"), Mapping) else {}
        item_type = _schema_type(items) or "string"
        if item_type in ("string", "number", "integer") and "enum" not in items:
            kind = InputKind.STRING_LIST
            item_kind = InputKind(item_type)

    minimum = prop.get("minimum", prop.get("exclusiveMinimum"))
    maximum = prop.get("maximum", prop.get("exclusiveMaximum"))
    return InputSpec(
        key=key,
        kind=kind,
        required=required,
        description=str(prop.get("description") or ""),
        title=str(prop.get("title") or ""),
        default=prop.get("default"),
        has_default="default" in prop,
        minimum=minimum if _is_number(minimum) else None,
        maximum=maximum if _is_number(maximum) else None,
        choices=tuple(enum) if kind == InputKind.ENUM else (),
        item_kind=item_kind,
        schema=prop,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- Specs → Django form fields ----------------------------------------------------------------


def choice_value(value: Any) -> str:
    """How an enum value travels in a form: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def initial_value(spec: InputSpec, value: Any) -> Any:
    """A JSON value (a schema default, or a stored input of an earlier run) as the form shows it."""
    if value is None:
        return None
    if spec.kind == InputKind.ENUM:
        return choice_value(value)
    if spec.kind == InputKind.STRING_LIST and isinstance(value, list):
        return "\n".join(str(item) for item in value)
    if spec.kind == InputKind.JSON:
        return value if isinstance(value, str) else json.dumps(value)
    if spec.kind == InputKind.BOOLEAN:
        return bool(value)
    if spec.schema.get("format") == "date-time" and isinstance(value, str):
        return _datetime_local(value)
    return value


def _datetime_local(value: str) -> str:
    """An RFC 3339 moment as <input type="datetime-local"> shows it: in UTC, without a zone."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds")


NUL_MESSAGE = "Remove the NUL character (\\0): it cannot be stored."


def contains_nul(value: Any) -> bool:
    """Whether a JSON value holds U+0000 anywhere (keys included). PostgreSQL stores it in
    neither text nor jsonb, so a run with such an input could not even be saved."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


class _RawField(forms.Field):
    """Hands the posted string to `coerce_input` unchanged (no stripping, no required check)."""

    def __init__(self, *, spec: InputSpec, **kwargs):
        self.spec = spec
        super().__init__(required=False, **kwargs)

    def to_python(self, value):
        coerced = coerce_input(self.spec, value)
        # Secrets are never stored, so only stored values need to be storable.
        if not self.spec.sensitive and contains_nul(coerced):
            raise ValidationError(NUL_MESSAGE, code="null_characters_not_allowed")
        return coerced


class _BooleanField(forms.BooleanField):
    def __init__(self, *, spec: InputSpec, **kwargs):
        self.spec = spec
        super().__init__(required=False, **kwargs)


class _FileField(forms.FileField):
    def __init__(self, *, spec: InputSpec, **kwargs):
        self.spec = spec
        super().__init__(required=False, **kwargs)

    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if upload and upload.size > settings.FILE_INPUT_MAX_BYTES:
            raise ValidationError(
                f"This file is {filesizeformat(upload.size)}; the limit is "
                f"{filesizeformat(settings.FILE_INPUT_MAX_BYTES)}.",
                code="file_too_large",
            )
        return upload


def _build_form_field(spec: InputSpec) -> forms.Field:
    attrs: dict[str, Any] = {}
    if spec.required and spec.kind != InputKind.BOOLEAN:
        # The form carries `novalidate`: the server validates and shows every error at once;
        # the attribute still tells assistive technology the field is required.
        attrs["required"] = True
        attrs["aria-required"] = "true"
    # The field's label stays the key (errors and the API name it so); the launch page shows the
    # schema's title as the label with the key beside it, and the description under the field.
    help_text = spec.description
    kwargs: dict[str, Any] = {"label": spec.key, "help_text": help_text}

    if spec.sensitive:
        attrs["autocomplete"] = "off"
        return _RawField(spec=spec, widget=forms.PasswordInput(attrs=attrs), **kwargs)
    if spec.kind == InputKind.FILE:
        if spec.schema.get("contentMediaType"):
            attrs["accept"] = spec.schema["contentMediaType"]
        return _FileField(spec=spec, widget=forms.ClearableFileInput(attrs=attrs), **kwargs)
    if spec.kind == InputKind.BOOLEAN:
        return _BooleanField(spec=spec, widget=forms.CheckboxInput(attrs=attrs), **kwargs)
    if spec.kind == InputKind.ENUM:
        choices = [(choice_value(value), str(value)) for value in spec.choices]
        if not (spec.required and spec.has_default):
            choices.insert(0, ("", "—"))
        return _RawField(spec=spec, widget=forms.Select(attrs=attrs, choices=choices), **kwargs)
    if spec.kind in (InputKind.NUMBER, InputKind.INTEGER):
        attrs["step"] = "1" if spec.kind == InputKind.INTEGER else "any"
        if _is_number(spec.schema.get("multipleOf")) and spec.schema["multipleOf"] > 0:
            attrs["step"] = spec.schema["multipleOf"]
        if spec.minimum is not None:
            attrs["min"] = spec.minimum
        if spec.maximum is not None:
            attrs["max"] = spec.maximum
        return _RawField(spec=spec, widget=forms.NumberInput(attrs=attrs), **kwargs)
    if spec.kind == InputKind.STRING_LIST:
        attrs["rows"] = 4
        kwargs["help_text"] = _sentences(help_text, "One item per line.")
        return _RawField(spec=spec, widget=forms.Textarea(attrs=attrs), **kwargs)
    if spec.kind == InputKind.JSON:
        attrs["rows"] = 4
        attrs["spellcheck"] = "false"
        if spec.in_schema:
            kwargs["help_text"] = _sentences(help_text, "Type JSON.")
        return _RawField(spec=spec, widget=forms.Textarea(attrs=attrs), **kwargs)
    if spec.kind == InputKind.TEXT:
        attrs["rows"] = 4
        return _RawField(spec=spec, widget=forms.Textarea(attrs=attrs), **kwargs)
    widget = forms.TextInput(attrs=attrs)
    # A string's format picks the browser's own control (its picker, its keyboard on phones).
    input_type = STRING_INPUT_TYPES.get(spec.schema.get("format"))
    if input_type:
        widget.input_type = input_type
        if input_type == "datetime-local":
            attrs["step"] = 1  # seconds may be given
            kwargs["help_text"] = _sentences(help_text, "In UTC.")
    return _RawField(spec=spec, widget=widget, **kwargs)


# JSON Schema string formats → <input type>.
STRING_INPUT_TYPES = {
    "date": "date",
    "date-time": "datetime-local",
    "email": "email",
    "uri": "url",
    "url": "url",
}
_LOCAL_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?")


def _sentences(*parts: str) -> str:
    """Help texts joined as sentences ("The tags. One item per line."), never run together."""
    kept = [part.strip() for part in parts if part and part.strip()]
    return " ".join(part if part[-1] in ".!?:" else part + "." for part in kept)


# --- Posted strings → JSON values --------------------------------------------------------------

_MISSING = object()


def coerce_input(spec: InputSpec, raw: Any) -> Any:
    """Turn one posted value into its JSON type. Returns `None` for "left empty" (the key is then
    omitted from the request, and jsonschema reports it if it is required). Raises
    `ValidationError` with a message that never repeats the value."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return raw
    text = str(raw)
    if spec.kind == InputKind.STRING_LIST:
        lines = [line.strip() for line in text.splitlines()]
        items = [line for line in lines if line]
        if spec.item_kind == InputKind.STRING:
            return items if items else None
        try:
            return [_number(item, spec.item_kind) for item in items] if items else None
        except ValueError:
            noun = "whole number" if spec.item_kind == InputKind.INTEGER else "number"
            raise ValidationError(f"Each line must be a {noun}.", code="invalid") from None
    if spec.kind in (InputKind.STRING, InputKind.TEXT) or (
        spec.sensitive and spec.kind not in (InputKind.NUMBER, InputKind.INTEGER)
    ):
        if spec.schema.get("format") == "date-time" and _LOCAL_DATETIME.fullmatch(text.strip()):
            # <input type="datetime-local"> sends "2025-03-01T14:02" with no zone; the schema
            # wants RFC 3339, and the help text says the field is in UTC.
            text = text.strip()
            return text + (":00Z" if len(text) == 16 else "Z")
        return text if text != "" else None
    if text.strip() == "":
        return None
    if spec.kind in (InputKind.NUMBER, InputKind.INTEGER):
        try:
            return _number(text.strip(), spec.kind)
        except ValueError:
            noun = "a whole number" if spec.kind == InputKind.INTEGER else "a number"
            raise ValidationError(f"Enter {noun}.", code="invalid") from None
    if spec.kind == InputKind.ENUM:
        by_value = {choice_value(value): value for value in spec.choices}
        if text not in by_value:
            allowed = ", ".join(str(value) for value in spec.choices)
            raise ValidationError(f"Choose one of: {allowed}.", code="invalid_choice")
        return by_value[text]
    if spec.kind == InputKind.JSON:
        try:
            return json_parse(text)
        except ParseError as exc:
            if not spec.in_schema:
                return text  # a prompt-only variable: plain text is fine
            # The parser's message names the problem (too deep, a number too long) and never
            # quotes the text.
            message = "Enter valid JSON." if exc.syntax else f"Enter valid JSON. {exc.msg}"
            raise ValidationError(message, code="invalid") from None
    return text


def _number(text: str, kind: InputKind) -> int | float:
    if len(text) > MAX_INT_DIGITS + 2:
        # int() refuses over 4,300 digits; no input needs more than a hundred.
        raise ValueError("too many digits")
    if kind == InputKind.INTEGER:
        number = float(text) if re.fullmatch(r"-?\d+\.0*", text) else int(text)
        return int(number)
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return int(value) if re.fullmatch(r"-?\d+", text) else value


def input_payload(specs: Iterable[InputSpec], cleaned: Mapping[str, Any]) -> InputPayload:
    """Split the cleaned form values (keyed by field name) into the request's three parts.
    Empty values are left out."""
    payload = InputPayload()
    for spec in specs:
        value = cleaned.get(spec.field_name, _MISSING)
        if value is _MISSING or value is None:
            continue
        if spec.kind == InputKind.FILE:
            if value:
                payload.files.append(
                    FileUpload(key=spec.key, filename=value.name, content=value.read())
                )
            continue
        if spec.sensitive:
            payload.sensitive_input_values[spec.api_key] = value
        else:
            payload.input_values[spec.key] = value
    return payload


# --- jsonschema validation ---------------------------------------------------------------------


def input_schema_errors(
    schema: Mapping[str, Any] | None,
    effective: Mapping[str, Any],
    *,
    skip_keys: Iterable[str] = (),
) -> tuple[dict[str, list[str]], list[str]]:
    """Validate the effective payload; return (errors by root key, errors of the whole payload).

    Uses the validator the schema's `$schema` names, Draft 2020-12 when it names none. Files are
    sent apart from `input_values`, so file properties are left out of the check. Keys in
    `skip_keys` (fields that already failed to parse) get no second error.
    """
    if not isinstance(schema, Mapping) or not schema:
        return {}, []
    schema = _without_file_properties(schema)
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError:
        # A broken schema upstream must not block launching; the API has the last word.
        return {}, []
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)

    skip = set(skip_keys)
    by_key: dict[str, list[str]] = {}
    general: list[str] = []
    for error in sorted(validator.iter_errors(dict(effective)), key=_error_order):
        path = list(error.absolute_path)
        if path:
            key, rest = str(path[0]), path[1:]
        elif error.validator == "required":
            key, rest = _missing_property(error), []
        else:
            key, rest = "", []
        if key and key in skip:
            continue
        # An error about the whole payload (no path) is about an object that holds the
        # secrets too: jsonschema's own message would quote it, so it is never used then.
        sensitive = key.startswith(SENSITIVE_PREFIX) or not path
        message = _error_message(error, sensitive=sensitive)
        if rest:
            message = f"{_path_label(rest)}: {message}"
        if key and (path or error.validator == "required"):
            messages = by_key.setdefault(key, [])
            if message not in messages:
                messages.append(message)
        else:
            general.append(message)
    return by_key, general


def _without_file_properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    schema = dict(schema)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        files = {
            k for k, p in properties.items() if isinstance(p, Mapping) and _is_file_property(p)
        }
        if files:
            schema["properties"] = {k: p for k, p in properties.items() if k not in files}
            if isinstance(schema.get("required"), list):
                schema["required"] = [k for k in schema["required"] if k not in files]
    return schema


def _error_order(error: jsonschema.ValidationError):
    return [str(part) for part in error.absolute_path], error.validator or ""


def _missing_property(error: jsonschema.ValidationError) -> str:
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    missing = [k for k in (error.validator_value or []) if k not in instance]
    for key in missing:
        if repr(key) in error.message:
            return str(key)
    return str(missing[0]) if missing else ""


def _path_label(parts: list) -> str:
    label = ""
    for part in parts:
        label += f"[{part}]" if isinstance(part, int) else f".{part}"
    return label.lstrip(".")


def _type_names(expected: Any) -> str:
    return " or ".join(expected) if isinstance(expected, list) else str(expected)


def _plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _error_message(error: jsonschema.ValidationError, *, sensitive: bool) -> str:
    """A message from the keyword that failed. The value itself is never quoted (it may be a
    secret, or long)."""
    keyword, expected = error.validator, error.validator_value
    if keyword == "required":
        missing = _missing_property(error)
        if error.absolute_path:
            return f"{missing!r} is required."
        return "This field is required."
    messages = {
        "type": lambda: f"Must be of type {_type_names(expected)}.",
        "minimum": lambda: f"Must be at least {expected}.",
        "maximum": lambda: f"Must be at most {expected}.",
        "exclusiveMinimum": lambda: f"Must be greater than {expected}.",
        "exclusiveMaximum": lambda: f"Must be less than {expected}.",
        "multipleOf": lambda: f"Must be a multiple of {expected}.",
        "minLength": lambda: f"Must be at least {_plural(expected, 'character')} long.",
        "maxLength": lambda: f"Must be at most {_plural(expected, 'character')} long.",
        "pattern": lambda: f"Must match the pattern {expected}.",
        "format": lambda: f"Must be a valid {expected}.",
        "enum": lambda: "Must be one of: " + ", ".join(str(value) for value in expected) + ".",
        "const": lambda: f"Must be {expected!r}.",
        "minItems": lambda: f"Must have at least {_plural(expected, 'item')}.",
        "maxItems": lambda: f"Must have at most {_plural(expected, 'item')}.",
        "uniqueItems": lambda: "Items must not repeat.",
        "additionalProperties": lambda: "Has properties the schema does not allow.",
        "anyOf": lambda: "Must match at least one of the forms the schema allows.",
        "oneOf": lambda: "Must match exactly one of the forms the schema allows.",
        "not": lambda: "Is a value the schema does not allow.",
        "minProperties": lambda: f"Must have at least {_plural(expected, 'value')}.",
        "maxProperties": lambda: f"Must have at most {_plural(expected, 'value')}.",
    }
    if keyword in messages:
        return messages[keyword]()
    if sensitive:
        return f"Is not valid ({keyword})."
    return error.message[:300]


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:6]
