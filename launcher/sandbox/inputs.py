"""Checking a run's inputs against its workflow's `input_schema` (spec §3.6).

The effective payload is `input_values` plus each sensitive value under a `$`-prefixed root key
(`sensitive_input_values.api_key` is checked as `$api_key`), so `customer_id` and `$customer_id`
can coexist. Problems come back as 422 entries located in the request body; a sensitive value
is never echoed, not even inside a message.
"""

from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from launcher.sandbox.errors import validation_item
from launcher.sandbox.parsing import JsonRefused, json_load


def input_schema_parse(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        schema = json_load(text)
    except JsonRefused:
        return None
    return schema if isinstance(schema, dict) else None


def inputs_check(
    input_schema: str | None, input_values: dict | None, sensitive_input_values: dict | None
) -> list[dict]:
    """422 entries for every input that breaks the schema (empty when all is well).

    The sandbox has no machines to supply missing values, so `required` is enforced at create
    time (the real API defers keys a machine could still fill in)."""
    schema = input_schema_parse(input_schema)
    if schema is None:
        return []
    payload = dict(input_values or {})
    payload.update({f"${name}": value for name, value in (sensitive_input_values or {}).items()})
    validator_class = validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except SchemaError:
        return []  # a broken stored schema cannot be held against the caller
    validator = validator_class(schema, format_checker=FormatChecker())

    try:
        errors = sorted(validator.iter_errors(payload), key=lambda e: list(map(str, e.path)))
    except Unresolvable:
        return []  # a `$ref` the sandbox cannot follow (the real API checks those at execution)
    items: dict[tuple, dict] = {}
    for error in errors:
        path = list(error.absolute_path)
        if error.validator == "required":
            for name in error.validator_value:
                if isinstance(error.instance, dict) and name not in error.instance:
                    _add(items, [*path, name], "Field required", "missing", error)
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            for name in error.instance:
                if name not in known:
                    _add(
                        items,
                        [*path, name],
                        "Extra inputs are not permitted by the workflow's input_schema",
                        "extra_forbidden",
                        error,
                    )
        else:
            _add(items, path, error.message, f"input_schema_{error.validator}", error)
    return list(items.values())


def _add(items: dict, path: list, msg: str, type_: str, error) -> None:
    if path and isinstance(path[0], str) and path[0].startswith("$"):
        loc = ("body", "sensitive_input_values", path[0][1:], *path[1:])
        if type_ not in ("missing", "extra_forbidden"):
            # jsonschema's messages quote the value; a sensitive one must not leak.
            msg = f"Value does not satisfy the input schema ('{error.validator}')"
        items.setdefault(loc, validation_item(loc, msg, type_))
        return
    loc = ("body", "input_values", *path)
    value = error.instance if type_ not in ("missing", "extra_forbidden") else None
    if not path and type_ not in ("missing", "extra_forbidden"):
        # A rule on the whole inputs: its instance (and jsonschema's message, which quotes it)
        # holds the sensitive values too. Echo only the plain inputs.
        msg = f"Value does not satisfy the input schema ('{error.validator}')"
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if not str(k).startswith("$")}
    if type_ == "extra_forbidden" and isinstance(error.instance, dict):
        value = error.instance.get(path[-1])
    item = (
        validation_item(loc, msg, type_)
        if type_ == "missing"
        else validation_item(loc, msg, type_, value)
    )
    items.setdefault(loc, item)
