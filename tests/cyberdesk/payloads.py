"""Realistic API payloads, shaped after the SDK's response models (cyberdesk 2.2.69)."""

import json

WORKFLOW_ID = "6f1c2a9e-3b1d-4c55-9a2e-0d3c1f7e8a10"
RUN_ID = "9b2f4e6a-1c3d-4e5f-8a7b-6c5d4e3f2a1b"
MACHINE_ID = "0c8e7d6f-5a4b-4c3d-9e2f-1a0b9c8d7e6f"
MODEL_ID = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
FALLBACK_MODEL_ID = "4e3d2c1b-0a9f-4e8d-9c7b-6a5f4e3d2c1b"
ATTACHMENT_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
ORG_ID = "org_2abcDEF"


def workflow(**overrides):
    data = {
        "id": WORKFLOW_ID,
        "name": "Download the monthly invoice",
        "main_prompt": "Log in to {portal} and download the invoice for {month}. Use {$password}.",
        "input_schema": json.dumps(
            {
                "type": "object",
                "properties": {"portal": {"type": "string"}, "month": {"type": "string"}},
                "required": ["portal"],
            }
        ),
        "output_schema": None,
        "includes_file_exports": True,
        "is_webhooks_enabled": True,
        "terminal_command_allowlist": None,
        "model_metadata": {
            "main_agent_model_id": MODEL_ID,
            "cache_detection_model_id": None,
            "fallback_model_1_id": FALLBACK_MODEL_ID,
            "fallback_model_2_id": None,
        },
        "post_run_check_failure_cleanup_prompt": None,
        "user_id": "user_9xyz",
        "organization_id": ORG_ID,
        "includes_input_variables": True,
        "workflow_metadata": {
            "has_unaddressed_error": True,
            "last_errored_run_start": "2025-05-01T09:00:00Z",
            "last_errored_run_uuid": RUN_ID,
        },
        "old_versions": [{"main_prompt": "old", "updated_at": "2025-04-01T00:00:00Z"}],
        "tags": [
            {
                "id": "11111111-2222-4333-8444-555555555555",
                "name": "finance",
                "organization_id": ORG_ID,
                "order": 0,
                "created_at": "2025-01-01T00:00:00Z",
                "updated_at": "2025-01-01T00:00:00Z",
                "is_archived": False,
                "emoji": "💶",
            }
        ],
        "post_run_checks": [
            {
                "id": "66666666-7777-4888-9999-000000000000",
                "name": "Invoice downloaded",
                "type": "run_attachment_exists",
                "organization_id": ORG_ID,
                "order": 0,
                "created_at": "2025-01-01T00:00:00Z",
                "updated_at": "2025-01-01T00:00:00Z",
                "file_target_mode": "exact",
                "file_names": ["invoice.pdf"],
            }
        ],
        "created_at": "2025-01-02T03:04:05Z",
        "updated_at": "2025-05-06T07:08:09.123456+00:00",
        "a_field_from_a_newer_api": {"ignored": True},
    }
    data.update(overrides)
    return data


def run(**overrides):
    data = {
        "id": RUN_ID,
        "workflow_id": WORKFLOW_ID,
        "machine_id": MACHINE_ID,
        "status": "success",
        "created_at": "2025-05-06T10:00:00Z",
        "started_at": "2025-05-06T10:00:05+00:00",
        "ended_at": "2025-05-06T10:03:00Z",
        "user_id": "user_9xyz",
        "organization_id": ORG_ID,
        "is_priority": False,
        "error": [],
        "output_data": {"invoice_total": "123.45"},
        "input_attachment_ids": [],
        "output_attachment_ids": [ATTACHMENT_ID],
        "run_message_history": [{"role": "assistant", "content": "Done."}],
        "input_values": {"portal": "https://billing.example.com", "month": "April"},
        "main_prompt": None,
        "model_metadata": {"main_agent_model_id": MODEL_ID},
        "pool_ids": [],
        "sensitive_input_aliases": {"password": "vault_alias_1"},
        "usage_metadata": {"total_agentic_steps": 12, "total_cached_steps": 3},
        "post_run_checks": [
            {"status": "success", "name": "Invoice downloaded", "type": "run_attachment_exists"}
        ],
        "session_id": None,
        "session_alias": None,
        "release_session_after": None,
        "a_field_from_a_newer_api": 1,
    }
    data.update(overrides)
    return data


def model_configuration(**overrides):
    data = {
        "id": MODEL_ID,
        "name": "Claude Sonnet (computer use)",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "description": "Default computer-use agent",
        "temperature": 0.0,
        "max_tokens": 8192,
        "timeout_seconds": 60.0,
        "max_retries": 2,
        "additional_params": None,
        "agent_harness_version_string": None,
        "is_computer_use_model": True,
        "is_archived": False,
        "organization_id": None,
        "api_key_alias": None,
        "is_system_default": True,
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-02-01T00:00:00Z",
    }
    data.update(overrides)
    return data


def attachment(**overrides):
    data = {
        "id": ATTACHMENT_ID,
        "run_id": RUN_ID,
        "filename": "invoice.pdf",
        "content_type": "application/pdf",
        "attachment_type": "output",
        "size_bytes": 48213,
        "storage_path": f"{ORG_ID}/runs/{RUN_ID}/outputs/invoice.pdf",
        "target_path": None,
        "cleanup_imports_after_run": False,
        "user_id": "user_9xyz",
        "organization_id": ORG_ID,
        "expires_at": None,
        "created_at": "2025-05-06T10:02:59Z",
    }
    data.update(overrides)
    return data


def llm_costs(**overrides):
    data = {
        "run_id": RUN_ID,
        "has_unpriced": False,
        "total_cost_usd": 0.0421,
        "rows": [
            {
                "role": "main_agent",
                "billing_platform": "anthropic",
                "model": "claude-sonnet-4-5",
                "endpoint_type": "messages",
                "source": "agent",
                "call_count": 12,
                "input_tokens": 10000,
                "uncached_input_tokens": 4000,
                "cache_read_tokens": 6000,
                "cache_write_5m_tokens": 0,
                "cache_write_1h_tokens": 0,
                "output_tokens": 900,
                "reasoning_tokens": 0,
                "cost_usd": 0.0421,
            }
        ],
    }
    data.update(overrides)
    return data


def page(items, *, total=None, skip=0, limit=100):
    return {
        "items": items,
        "total": len(items) if total is None else total,
        "skip": skip,
        "limit": limit,
    }
