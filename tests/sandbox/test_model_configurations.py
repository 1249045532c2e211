"""GET /v1/model-configurations: a bare array (no envelope), and one by id."""

import uuid

import pytest

from launcher.sandbox import seed

pytestmark = pytest.mark.django_db


def test_it_lists_model_configurations_as_a_bare_array(api):
    body = api.get("model-configurations").json()

    assert isinstance(body, list)
    assert len(body) == 8
    assert {"anthropic", "openai", "google"} <= {config["provider"] for config in body}
    assert [config["is_system_default"] for config in body].count(True) == 1
    assert any(config["is_archived"] for config in body)
    assert any(config["is_computer_use_model"] for config in body)
    assert any(not config["is_computer_use_model"] for config in body)


def test_it_reads_one_model_configuration(api):
    config = api.get(f"model-configurations/{seed.MODEL_SONNET}").json()

    assert config["model"] == "claude-sonnet-4-5-20250929"
    assert config["is_system_default"] is True


def test_an_unknown_model_configuration_is_a_404(api):
    assert api.get(f"model-configurations/{uuid.uuid4()}").status_code == 404
    assert api.get("model-configurations/nope").status_code == 422
