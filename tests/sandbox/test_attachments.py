"""Run attachments: listing, metadata, signed download URLs, direct download."""

import base64
import uuid

import pytest

from launcher.sandbox import seed

pytestmark = pytest.mark.django_db

CONTENT = b"%PDF-1.4 invoice"


@pytest.fixture
def run(api, clock):
    return api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_INVOICE),
            "input_values": {
                "invoice_filename": "inv.pdf",
                "invoice_total": 5,
                "line_item_count": 1,
            },
            "file_inputs": [{"filename": "inv.pdf", "content": base64.b64encode(CONTENT).decode()}],
        },
    ).json()


def test_it_lists_a_runs_attachments_by_type(api, run, clock):
    clock.shift(120)

    inputs = api.get("run-attachments", {"run_id": run["id"], "attachment_type": "input"}).json()
    outputs = api.get("run-attachments", {"run_id": run["id"], "attachment_type": "output"}).json()

    assert [a["filename"] for a in inputs["items"]] == ["inv.pdf"]
    assert inputs["items"][0]["size_bytes"] == len(CONTENT)
    assert [a["filename"] for a in outputs["items"]] == ["export.csv"]
    assert outputs["total"] == 1


def test_a_signed_download_url_serves_the_file_without_the_api_key(api, run, client):
    [attachment_id] = run["input_attachment_ids"]

    body = api.get(f"run-attachments/{attachment_id}/download-url", {"expires_in": 60}).json()

    assert body["expires_in"] == 60
    response = client.get(body["url"].replace("http://testserver", ""))
    assert response.status_code == 200
    assert response.content == CONTENT
    assert "inv.pdf" in response["Content-Disposition"]


def test_a_signed_url_expires(api, run, client, clock):
    [attachment_id] = run["input_attachment_ids"]
    url = api.get(f"run-attachments/{attachment_id}/download-url", {"expires_in": 10}).json()["url"]

    clock.shift(11)

    assert client.get(url.replace("http://testserver", "")).status_code == 403


def test_a_tampered_signed_url_is_refused(api, run, client):
    [attachment_id] = run["input_attachment_ids"]
    url = api.get(f"run-attachments/{attachment_id}/download-url").json()["url"]

    assert client.get(url.replace("http://testserver", "")[:-3] + "xyz").status_code == 403


@pytest.mark.parametrize("expires_in", ["5", "3601"])
def test_expires_in_must_be_between_10_and_3600(api, run, expires_in):
    [attachment_id] = run["input_attachment_ids"]

    response = api.get(f"run-attachments/{attachment_id}/download-url", {"expires_in": expires_in})

    assert response.status_code == 422


def test_direct_download_needs_the_key_and_returns_bytes(api, run):
    [attachment_id] = run["input_attachment_ids"]

    assert api.get(f"run-attachments/{attachment_id}/download").content == CONTENT
    assert api.get(f"run-attachments/{attachment_id}").json()["attachment_type"] == "input"
    assert api.get(f"run-attachments/{uuid.uuid4()}").status_code == 404
