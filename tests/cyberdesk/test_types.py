"""Parsing at the edge: lenient with what is optional or new, strict with what is required."""

import logging
from datetime import UTC, datetime

import pytest

from launcher.cyberdesk import errors, types
from tests.cyberdesk import payloads


@pytest.mark.parametrize(
    "raw",
    ["2025-05-06T10:00:00Z", "2025-05-06T10:00:00+00:00", "2025-05-06T12:00:00+02:00"],
)
def test_timestamps_with_z_or_an_offset_mean_the_same_instant(raw):
    run = types.Run.from_api(payloads.run(created_at=raw))
    assert run.created_at == datetime(2025, 5, 6, 10, 0, tzinfo=UTC)


def test_a_timestamp_without_an_offset_is_taken_as_utc():
    run = types.Run.from_api(payloads.run(created_at="2025-05-06T10:00:00.5"))
    assert run.created_at.tzinfo is not None
    assert run.created_at == datetime(2025, 5, 6, 10, 0, 0, 500000, tzinfo=UTC)


def test_a_timestamp_that_is_not_a_date_is_an_invalid_response():
    with pytest.raises(errors.InvalidResponse, match="not a date"):
        types.Run.from_api(payloads.run(created_at="yesterday"))


def test_an_unreadable_input_schema_is_dropped_with_a_warning(caplog):
    caplog.set_level(logging.WARNING)
    workflow = types.Workflow.from_api(payloads.workflow(input_schema="{not json"))
    assert workflow.input_schema is None
    assert "input_schema" in caplog.text


def test_an_empty_or_missing_input_schema_is_none():
    assert types.Workflow.from_api(payloads.workflow(input_schema="")).input_schema is None
    data = payloads.workflow()
    del data["input_schema"]
    assert types.Workflow.from_api(data).input_schema is None


def test_a_minimal_workflow_parses_with_safe_defaults():
    workflow = types.Workflow.from_api(
        {
            "id": payloads.WORKFLOW_ID,
            "main_prompt": "Do it",
            "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-01T00:00:00Z",
        }
    )
    assert workflow.name == ""
    assert workflow.tags == []
    assert workflow.model_metadata is None
    assert (workflow.is_webhooks_enabled, workflow.last_run_errored) == (False, False)
    assert workflow.has_post_run_checks is False


@pytest.mark.parametrize("key", ["id", "main_prompt", "created_at", "updated_at"])
def test_a_workflow_missing_a_required_field_names_it(key):
    data = payloads.workflow()
    del data[key]
    with pytest.raises(errors.InvalidResponse, match=f"workflow without its '{key}'"):
        types.Workflow.from_api(data)


@pytest.mark.parametrize("key", ["id", "workflow_id", "status", "created_at"])
def test_a_run_missing_a_required_field_names_it(key):
    data = payloads.run()
    del data[key]
    with pytest.raises(errors.InvalidResponse, match=f"'{key}'"):
        types.Run.from_api(data)


def test_a_wrongly_typed_field_is_an_invalid_response_not_a_type_error():
    with pytest.raises(errors.InvalidResponse, match="'id' is not a UUID"):
        types.Run.from_api(payloads.run(id="nope"))
    with pytest.raises(errors.InvalidResponse, match="'error' is not a list"):
        types.Run.from_api(payloads.run(error="boom"))
    with pytest.raises(errors.InvalidResponse, match="not a JSON object"):
        types.Run.from_api(["not", "an", "object"])


def test_nul_characters_become_replacement_characters_so_the_answer_can_be_stored():
    """PostgreSQL stores U+0000 in neither text nor jsonb; an agent's output may hold one."""
    run = types.Run.from_api(
        payloads.run(output_data={"k\x00": ["v\x00"]}, error=["e\x00"], main_prompt="p\x00")
    )
    assert run.output_data == {"k\ufffd": ["v\ufffd"]}
    assert run.error == ["e\ufffd"]
    assert run.main_prompt == "p\ufffd"
    workflow = types.Workflow.from_api(payloads.workflow(name="n\x00", main_prompt="Do\x00 it"))
    assert (workflow.name, workflow.main_prompt) == ("n\ufffd", "Do\ufffd it")


def test_an_unknown_status_from_a_newer_api_is_kept_as_text():
    assert types.Run.from_api(payloads.run(status="paused")).status == "paused"


def test_model_metadata_sends_all_four_roles():
    metadata = types.ModelMetadata.from_api({"main_agent_model_id": payloads.MODEL_ID})
    assert metadata.to_api() == {
        "main_agent_model_id": payloads.MODEL_ID,
        "cache_detection_model_id": None,
        "fallback_model_1_id": None,
        "fallback_model_2_id": None,
    }


def test_a_model_configuration_missing_its_name_is_an_invalid_response():
    data = payloads.model_configuration()
    del data["name"]
    with pytest.raises(errors.InvalidResponse, match="model configuration without its 'name'"):
        types.ModelConfiguration.from_api(data)


def test_a_file_inputs_repr_does_not_dump_its_bytes():
    assert "secret-bytes" not in repr(types.FileInput("a.txt", b"secret-bytes"))
