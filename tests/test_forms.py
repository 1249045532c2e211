"""The launch form: its choices, its generated inputs and every validation error."""

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from launcher.cyberdesk import errors
from launcher.forms import LaunchForm, highlight_prompt_variables
from launcher.models import PromptMode
from tests.launch_api import V2_TEXT, VALID_POST, make_workflow

pytestmark = pytest.mark.django_db


def _form(catalog, data=None, files=None, **kwargs):
    return LaunchForm(
        data, files, workflows=[catalog.workflow], workflow=catalog.workflow, **kwargs
    )


def _post(catalog, **overrides):
    data = {
        "workflow": str(catalog.workflow.pk),
        "model": "",
        "prompt": "stored",
        "token": str(uuid.uuid4()),
        **VALID_POST,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_model_choices_start_with_the_workflow_default_then_offered_models(catalog):
    choices = _form(catalog).fields["model"].choices
    assert choices[0] == ("", "Workflow default (Cyberdesk default)")
    assert choices[1:] == [(str(catalog.model.pk), "Claude Sonnet")]


def test_the_prompt_choices_default_to_production(catalog):
    form = _form(catalog)
    values = [value for value, _ in form.fields["prompt"].choices]
    assert values == [
        "stored",
        "latest",
        "label:production",
        f"version:{catalog.v2.pk}",
        f"version:{catalog.v1.pk}",
    ]
    assert form.chosen_prompt == "label:production"
    assert form.resolved_prompt.version == catalog.v1


def test_without_production_the_stored_prompt_is_the_default(db):
    workflow = make_workflow()
    form = LaunchForm(workflows=[workflow], workflow=workflow)
    assert form.chosen_prompt == "stored"
    assert form.prompt_text == workflow.main_prompt


def test_the_inputs_follow_the_schema_and_the_chosen_prompt(catalog):
    stored = _form(catalog)
    assert [spec.key for spec in stored.input_specs] == [
        "customer_id",
        "age",
        "notify",
        "region",
        "tags",
        "$api_key",
    ]
    with_v2 = _form(catalog, initial={"prompt": f"version:{catalog.v2.pk}"})
    assert [spec.key for spec in with_v2.input_specs][-1] == "ticket"
    assert with_v2.sensitive_keys == ["$api_key"]


def test_schema_defaults_are_the_initial_values(catalog):
    form = _form(catalog)
    assert form["input:notify"].value() is True
    assert form["input:region"].value() == "eu"


def test_a_valid_post_gives_the_three_parts_of_the_request(catalog):
    form = _form(catalog, _post(catalog, model=str(catalog.model.pk)))
    assert form.is_valid(), form.errors
    assert form.cleaned_data["model"] == catalog.model
    assert form.cleaned_data["prompt"].mode == PromptMode.STORED
    assert form.payload.input_values == {
        "customer_id": "c-100",
        "age": 42,
        "notify": True,
        "region": "us",
        "tags": ["vip", "new"],
    }
    assert form.payload.sensitive_input_values == {"api_key": "s3cret-key"}


def test_every_problem_is_reported_next_to_its_field(catalog):
    form = _form(
        catalog,
        _post(
            catalog,
            **{
                "input:customer_id": "ab",
                "input:age": "twelve",
                "input:region": "mars",
                "input:$api_key": "abc",
            },
        ),
    )
    assert not form.is_valid()
    assert form.errors["input:customer_id"] == ["Must be at least 3 characters long."]
    assert form.errors["input:age"] == ["Enter a whole number."]
    assert form.errors["input:region"] == ["Choose one of: eu, us."]
    assert form.errors["input:$api_key"] == ["Must be at least 4 characters long."]


def test_missing_required_inputs_and_out_of_range_numbers(catalog):
    form = _form(catalog, _post(catalog, **{"input:customer_id": "", "input:age": "12"}))
    assert not form.is_valid()
    assert form.errors["input:customer_id"] == ["This field is required."]
    assert form.errors["input:age"] == ["Must be at least 18."]


def test_an_unchecked_box_is_false_not_missing(catalog):
    data = _post(catalog)
    del data["input:notify"]
    form = _form(catalog, data)
    assert form.is_valid(), form.errors
    assert form.payload.input_values["notify"] is False


def test_a_model_no_longer_offered_is_refused(catalog):
    form = _form(catalog, _post(catalog, model=str(catalog.disabled_model.pk)))
    assert not form.is_valid()
    assert form.errors["model"] == ["That model is no longer offered; choose another."]


def test_an_unknown_prompt_choice_is_refused(catalog):
    form = _form(catalog, _post(catalog, prompt="version:999999"))
    assert not form.is_valid()
    assert "prompt" in form.errors


def test_a_missing_token_means_the_form_expired(catalog):
    form = _form(catalog, _post(catalog, token=None))
    assert not form.is_valid()
    assert "expired" in form.errors["token"][0]


def test_a_renewed_token_is_a_new_launch(catalog):
    data = _post(catalog)
    form = _form(catalog, data)
    form.renew_token()
    assert form["token"].value() != data["token"]


def test_a_secret_is_never_rendered_back(catalog):
    form = _form(catalog, _post(catalog, **{"input:customer_id": "ab"}))
    assert not form.is_valid()
    html = str(form["input:$api_key"])
    assert "s3cret-key" not in html
    assert 'type="password"' in html
    assert 'value="ab"' in str(form["input:customer_id"])


def test_a_secret_is_not_quoted_by_an_error_about_the_whole_form():
    schema = {
        "properties": {"email": {"type": "string"}, "phone": {"type": "string"}},
        "anyOf": [{"required": ["email"]}, {"required": ["phone"]}],
    }
    schema["properties"]["$api_key"] = {"type": "string"}
    workflow = make_workflow(input_schema=schema, main_prompt="Hello")
    data = {
        "workflow": str(workflow.pk),
        "prompt": "stored",
        "token": str(uuid.uuid4()),
        "input:$api_key": "s3cret-key",
    }
    form = LaunchForm(data, workflows=[workflow], workflow=workflow)
    assert not form.is_valid()
    assert form.non_field_errors()
    assert "s3cret-key" not in str(form.errors)


def test_a_nul_character_is_refused_next_to_its_field(catalog):
    """PostgreSQL cannot store U+0000 in jsonb: the run could not be stored."""
    form = _form(catalog, _post(catalog, **{"input:customer_id": "c-1\x00x"}))
    assert not form.is_valid()
    assert form.errors["input:customer_id"] == [
        "Remove the NUL character (\\0): it cannot be stored."
    ]


def test_files_are_checked_against_the_size_limit(catalog, settings):
    settings.FILE_INPUT_MAX_BYTES = 10
    workflow = make_workflow(
        input_schema={"properties": {"scan": {"type": "string", "format": "binary"}}}
    )
    data = {"workflow": str(workflow.pk), "prompt": "stored", "token": str(uuid.uuid4())}
    too_big = LaunchForm(
        data,
        {"input:scan": SimpleUploadedFile("scan.pdf", b"x" * 11)},
        workflows=[workflow],
        workflow=workflow,
    )
    assert not too_big.is_valid()
    assert too_big.errors["input:scan"] == ["This file is 11\xa0bytes; the limit is 10\xa0bytes."]
    fits = LaunchForm(
        data,
        {"input:scan": SimpleUploadedFile("scan.pdf", b"x" * 10)},
        workflows=[workflow],
        workflow=workflow,
    )
    assert fits.is_valid(), fits.errors
    assert [(f.filename, f.content) for f in fits.payload.files] == [("scan.pdf", b"x" * 10)]
    assert fits.payload.input_values == {}


def test_the_apis_own_errors_land_on_their_fields(catalog):
    form = _form(catalog, _post(catalog))
    assert form.is_valid()
    form.add_api_errors(
        errors.InvalidRequest(
            "refused",
            field_errors={
                "input_values.customer_id": ["unknown customer"],
                "sensitive_input_values.api_key": ["key revoked"],
                "main_agent_model_id": ["not a model"],
                "machine_id": ["busy"],
            },
            messages=["try later"],
        )
    )
    assert form.errors["input:customer_id"] == ["unknown customer"]
    assert form.errors["input:$api_key"] == ["key revoked"]
    assert form.errors["model"] == ["not a model"]
    assert form.non_field_errors() == ["machine_id: busy", "try later"]


def test_a_refresh_shows_typed_values_again_but_no_secret(catalog):
    echo = {**_post(catalog), "input:customer_id": "typed", "prompt": f"version:{catalog.v2.pk}"}
    del echo["input:notify"]
    form = _form(catalog, echo=echo)
    assert not form.is_bound
    assert form["input:customer_id"].value() == "typed"
    assert form["input:notify"].value() is False
    assert form["input:$api_key"].value() is None
    assert form.chosen_prompt == f"version:{catalog.v2.pk}"
    assert form.prompt_text == V2_TEXT


def test_prefill_shows_stored_json_values(catalog):
    form = _form(catalog)
    form.prefill_inputs({"customer_id": "c-1", "tags": ["a", "b"], "notify": False, "x": 1})
    assert form["input:customer_id"].value() == "c-1"
    assert form["input:tags"].value() == "a\nb"
    assert form["input:notify"].value() is False


def test_the_preview_escapes_the_text_and_marks_variables():
    html = highlight_prompt_variables('<b>"Hi"</b> {name} {$pin} {{runtime}} \\{literal} {a.b[0]}')
    assert "<b>" not in html
    assert "&lt;b&gt;" in html
    assert '<mark class="var">{name}</mark>' in html
    assert '<mark class="var var-secret">{$pin}</mark>' in html
    assert '<mark class="var">{a.b[0]}</mark>' in html
    assert "{{runtime}}" in html and '<mark class="var">{runtime}' not in html
    assert "\\{literal}" in html and '<mark class="var">{literal}' not in html
