"""input_schema → form fields, posted strings → JSON values, jsonschema errors → fields."""

import pytest
from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from launcher.inputs import (
    InputKind,
    coerce_input,
    initial_value,
    input_payload,
    input_schema_errors,
    input_specs,
)

SCHEMA = {
    "type": "object",
    "required": ["customer_id", "age", "$api_key"],
    "properties": {
        "customer_id": {"type": "string", "description": "The customer's id.", "minLength": 3},
        "age": {"type": "integer", "minimum": 18, "maximum": 120},
        "ratio": {"type": "number", "exclusiveMaximum": 1},
        "notify": {"type": "boolean", "default": True},
        "region": {"type": "string", "enum": ["eu", "us"], "default": "eu"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "scores": {"type": "array", "items": {"type": "integer"}},
        "address": {"type": "object", "properties": {"zip": {"type": "string"}}},
        "report": {"type": "string", "format": "binary", "description": "A PDF."},
        "$api_key": {"type": "string", "minLength": 8},
    },
}


def _specs(schema=SCHEMA, variables=()):
    return {spec.key: spec for spec in input_specs(schema, variables)}


def test_it_offers_one_field_per_property_in_schema_order():
    assert list(_specs()) == list(SCHEMA["properties"])


@pytest.mark.parametrize(
    ("key", "kind", "widget"),
    [
        ("customer_id", InputKind.STRING, forms.TextInput),
        ("age", InputKind.INTEGER, forms.NumberInput),
        ("ratio", InputKind.NUMBER, forms.NumberInput),
        ("notify", InputKind.BOOLEAN, forms.CheckboxInput),
        ("region", InputKind.ENUM, forms.Select),
        ("tags", InputKind.STRING_LIST, forms.Textarea),
        ("scores", InputKind.STRING_LIST, forms.Textarea),
        ("address", InputKind.JSON, forms.Textarea),
        ("report", InputKind.FILE, forms.ClearableFileInput),
        ("$api_key", InputKind.STRING, forms.PasswordInput),
    ],
)
def test_each_schema_type_gets_its_own_control(key, kind, widget):
    spec = _specs()[key]
    field = spec.form_field()
    assert spec.kind == kind
    assert type(field.widget) is widget
    assert field.label == key


def test_integer_fields_carry_their_bounds_and_required_fields_say_so():
    age = _specs()["age"].form_field()
    assert age.widget.attrs["min"] == 18
    assert age.widget.attrs["max"] == 120
    assert age.widget.attrs["step"] == "1"
    assert age.widget.attrs["required"] is True
    assert "required" not in _specs()["ratio"].form_field().widget.attrs


def test_descriptions_and_defaults_come_from_the_schema():
    specs = _specs()
    assert specs["customer_id"].form_field().help_text == "The customer's id."
    assert specs["notify"].default is True
    assert specs["region"].default == "eu"


def test_an_enum_offers_its_values_and_a_blank_only_when_optional():
    region = _specs()["region"].form_field()
    assert [value for value, _ in region.widget.choices] == ["", "eu", "us"]
    required_with_default = input_specs(
        {
            "required": ["region"],
            "properties": {"region": {"enum": ["eu", "us"], "default": "eu"}},
        }
    )[0]
    assert [v for v, _ in required_with_default.form_field().widget.choices] == ["eu", "us"]


def test_sensitive_fields_never_render_their_value():
    field = _specs()["$api_key"].form_field()
    assert field.widget.render_value is False
    assert _specs()["$api_key"].api_key == "api_key"


def test_prompt_variables_the_schema_lacks_become_fields():
    specs = _specs(variables=["customer_id", "ticket", "$otp", "patient.dob", "patient.name"])
    assert specs["ticket"].kind == InputKind.STRING and not specs["ticket"].in_schema
    assert type(specs["$otp"].form_field().widget) is forms.PasswordInput
    assert specs["patient"].kind == InputKind.JSON
    assert list(specs).count("patient") == 1
    assert specs["customer_id"].in_schema


def test_field_names_are_the_keys_unless_a_key_cannot_be_an_html_id():
    specs = input_specs({"properties": {"first name/ü": {}, "customer_id": {}, "$pin": {}}})
    odd, plain, secret = (spec.field_name for spec in specs)
    assert " " not in odd and "/" not in odd and odd.startswith("input:first-name")
    assert plain == "input:customer_id"
    assert secret == "input:$pin"


@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("customer_id", "  abc ", "  abc "),
        ("customer_id", "", None),
        ("age", "42", 42),
        ("age", "42.0", 42),
        ("ratio", "0.5", 0.5),
        ("ratio", "2", 2),
        ("region", "us", "us"),
        ("tags", "a\n\n b \r\nc", ["a", "b", "c"]),
        ("tags", "\n", None),
        ("scores", "1\n2", [1, 2]),
        ("address", '{"zip": "123"}', {"zip": "123"}),
        ("$api_key", "s3cret", "s3cret"),
    ],
)
def test_posted_strings_become_json_values(key, raw, value):
    assert coerce_input(_specs()[key], raw) == value


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("age", "forty", "Enter a whole number."),
        ("age", "4.5", "Enter a whole number."),
        ("ratio", "nan", "Enter a number."),
        ("region", "mars", "Choose one of: eu, us."),
        ("scores", "1\ntwo", "Each line must be a whole number."),
        ("address", "{not json", "Enter valid JSON."),
    ],
)
def test_values_of_the_wrong_shape_are_refused_without_echoing_them(key, raw, message):
    with pytest.raises(ValidationError) as caught:
        coerce_input(_specs()[key], raw)
    assert caught.value.messages == [message]


def test_the_payload_splits_inputs_secrets_and_files():
    specs = input_specs(SCHEMA)
    upload = SimpleUploadedFile("r.pdf", b"%PDF-1", content_type="application/pdf")
    payload = input_payload(
        specs,
        {
            "input:customer_id": "c-1",
            "input:age": None,
            "input:notify": False,
            "input:$api_key": "s3cret-key",
            "input:report": upload,
        },
    )
    assert payload.input_values == {"customer_id": "c-1", "notify": False}
    assert payload.sensitive_input_values == {"api_key": "s3cret-key"}
    assert [(f.key, f.filename, f.content) for f in payload.files] == [
        ("report", "r.pdf", b"%PDF-1")
    ]
    assert payload.effective() == {
        "customer_id": "c-1",
        "notify": False,
        "$api_key": "s3cret-key",
    }


def test_every_schema_error_lands_on_its_field():
    by_key, general = input_schema_errors(
        SCHEMA,
        {"customer_id": "ab", "ratio": 1, "tags": [], "$api_key": "short", "address": {"zip": 5}},
    )
    assert by_key == {
        "$api_key": ["Must be at least 8 characters long."],
        "address": ["zip: Must be of type string."],
        "age": ["This field is required."],
        "customer_id": ["Must be at least 3 characters long."],
        "ratio": ["Must be less than 1."],
        "tags": ["Must have at least 1 item."],
    }
    assert general == []


def test_a_secret_never_appears_in_an_error_message():
    schema = {"properties": {"$pin": {"type": "string", "pattern": "^[0-9]{4}$", "not": {}}}}
    by_key, _ = input_schema_errors(schema, {"$pin": "my-secret-value"})
    assert by_key["$pin"]
    assert all("my-secret-value" not in message for message in by_key["$pin"])


@pytest.mark.parametrize(
    "rule",
    [
        {"anyOf": [{"required": ["email"]}, {"required": ["phone"]}]},
        {"oneOf": [{"required": ["email"]}, {"required": ["phone"]}]},
        {"not": {"required": ["$pin"]}},
        {"maxProperties": 1},
    ],
)
def test_a_secret_never_appears_in_an_error_about_the_whole_payload(rule):
    """A rule on the whole object quotes the whole object in jsonschema's message, secrets and
    all: such errors get a message of our own."""
    schema = {"properties": {"$pin": {"type": "string"}, "name": {"type": "string"}}, **rule}
    by_key, general = input_schema_errors(schema, {"name": "Ann", "$pin": "my-secret-value"})
    messages = general + [m for found in by_key.values() for m in found]
    assert messages
    assert all("my-secret-value" not in message for message in messages)


def test_keys_that_failed_to_parse_get_no_second_error():
    by_key, _ = input_schema_errors(SCHEMA, {"customer_id": "abc"}, skip_keys={"age"})
    assert "age" not in by_key


def test_errors_about_the_whole_payload_are_general():
    schema = {"properties": {"a": {"type": "string"}}, "additionalProperties": False}
    by_key, general = input_schema_errors(schema, {"a": "x", "b": "y"})
    assert by_key == {}
    assert general == ["Has properties the schema does not allow."]


def test_file_properties_are_not_checked_as_input_values():
    by_key, _ = input_schema_errors(
        {"required": ["report"], "properties": {"report": {"type": "file"}}}, {}
    )
    assert by_key == {}


def test_the_schema_draft_is_honoured_and_formats_are_checked():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "properties": {"email": {"type": "string", "format": "email"}},
    }
    by_key, _ = input_schema_errors(schema, {"email": "not-an-email"})
    assert by_key == {"email": ["Must be a valid email."]}


def test_a_broken_or_missing_schema_never_blocks_a_launch():
    assert input_schema_errors(None, {"a": 1}) == ({}, [])
    assert input_schema_errors({"type": "no-such-type"}, {"a": 1}) == ({}, [])
    assert input_specs(None, ["x"])[0].key == "x"


def test_a_schema_title_leaves_the_help_text_to_the_description_and_the_label_the_key():
    spec = input_specs(
        {"properties": {"dob": {"type": "string", "title": "Date of birth", "description": "ISO"}}}
    )[0]
    field = spec.form_field()
    assert field.label == "dob"  # the page shows the title as the label (launch.html)
    assert field.help_text == "ISO"


def test_string_formats_get_the_browsers_own_inputs():
    specs = input_specs(
        {
            "properties": {
                "born": {"type": "string", "format": "date"},
                "due": {"type": "string", "format": "date-time"},
                "mail": {"type": "string", "format": "email"},
                "site": {"type": "string", "format": "uri"},
                "count": {"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 0.5},
            }
        }
    )
    html = {spec.key: str(spec.form_field().widget.render(spec.key, None)) for spec in specs}

    assert 'type="date"' in html["born"]
    assert 'type="datetime-local"' in html["due"]
    assert 'type="email"' in html["mail"]
    assert 'type="url"' in html["site"]
    assert 'min="0"' in html["count"] and 'max="10"' in html["count"]
    assert 'step="0.5"' in html["count"]


def test_a_local_date_time_is_sent_as_rfc3339_in_utc_and_shown_back_without_a_zone():
    [spec] = input_specs({"properties": {"due": {"type": "string", "format": "date-time"}}})

    assert coerce_input(spec, "2025-03-01T14:02") == "2025-03-01T14:02:00Z"
    assert coerce_input(spec, "2025-03-01T14:02:30") == "2025-03-01T14:02:30Z"
    assert initial_value(spec, "2025-03-01T16:02:30+02:00") == "2025-03-01T14:02:30"
    assert "In UTC." in spec.form_field().help_text


def test_help_texts_are_sentences_that_never_run_together():
    [spec] = input_specs(
        {
            "properties": {
                "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags to add"}
            }
        }
    )

    assert spec.form_field().help_text == "Tags to add. One item per line."


def test_an_enum_error_names_the_allowed_values():
    [spec] = input_specs({"properties": {"size": {"enum": ["S", "M", "L"]}}})

    with pytest.raises(ValidationError) as caught:
        coerce_input(spec, "XL")

    assert caught.value.messages == ["Choose one of: S, M, L."]
