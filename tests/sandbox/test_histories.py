"""The sandbox's message histories follow Anthropic's computer-use shape: text blocks,
`tool_use` blocks with an `action`, and `tool_result`s carrying a small PNG screenshot."""

import base64

import pytest

from launcher.sandbox import seed

pytestmark = pytest.mark.django_db

INPUTS = {"patient_name": "Ada Lovelace", "date_of_birth": "1815-12-10", "payer": "Aetna"}


def test_a_finished_runs_history_reads_like_a_computer_use_conversation(api, clock):
    created = api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_ELIGIBILITY),
            "input_values": INPUTS,
            "sensitive_input_values": {"portal_password": "hunter2"},
        },
    ).json()
    clock.shift(120)
    history = api.get(f"runs/{created['id']}").json()["run_message_history"]

    assert history[0]["role"] == "user" and "Ada Lovelace" in history[0]["content"][0]["text"]
    blocks = [block for message in history for block in message["content"]]
    uses = [block for block in blocks if block["type"] == "tool_use"]
    results = [block for block in blocks if block["type"] == "tool_result"]
    assert uses and all({"id", "name", "input"} <= set(use) for use in uses)
    assert all("action" in use["input"] for use in uses if use["name"] == "computer")
    # Every result answers a tool use before it, with a PNG screenshot.
    ids = {use["id"] for use in uses}
    assert results and all(result["tool_use_id"] in ids for result in results)
    for result in results:
        image = next(part for part in result["content"] if part["type"] == "image")
        assert image["source"]["media_type"] == "image/png"
        assert base64.b64decode(image["source"]["data"]).startswith(b"\x89PNG")
    # The agent types a value from the inputs, never a secret.
    typed = [use["input"].get("text") for use in uses if use["input"].get("action") == "type"]
    assert "hunter2" not in str(history)
    assert all(text in INPUTS.values() for text in typed)
    assert history[-1]["role"] == "assistant"
