"""Demo data for the sandbox: a few realistic workflows and model configurations.

Fixed ids (UUIDv5 of a name), so seeding twice changes nothing and tests can refer to them.
Existing rows are left as they are (a prompt published from Launcher survives `make run`)
unless `reset=True`.
"""

import json
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from launcher.sandbox.models import ModelConfiguration, Scenario, Tag, Workflow

_NAMESPACE = uuid.UUID("5a4db0c5-5eed-4000-8000-000000000000")


def seed_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


# --- Model configurations -------------------------------------------------------------------------

MODEL_SONNET = seed_id("model:claude-sonnet-4-5")
MODEL_OPUS = seed_id("model:claude-opus-4-1")
MODEL_HAIKU = seed_id("model:claude-haiku-4-5")
MODEL_OPENAI_CUA = seed_id("model:openai-computer-use")
MODEL_GPT41_MINI = seed_id("model:gpt-4-1-mini")
MODEL_GEMINI_CU = seed_id("model:gemini-2-5-computer-use")
MODEL_GEMINI_FLASH = seed_id("model:gemini-2-5-flash")
MODEL_SONNET_37 = seed_id("model:claude-3-7-sonnet")

MODEL_CONFIGURATIONS = [
    {
        "id": MODEL_SONNET,
        "name": "Claude Sonnet 4.5",
        "description": "Cyberdesk's default computer-use agent.",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5-20250929",
        "is_computer_use_model": True,
        "is_system_default": True,
        "max_tokens": 8192,
        "input_usd_per_mtok": 3.0,
        "output_usd_per_mtok": 15.0,
    },
    {
        "id": MODEL_OPUS,
        "name": "Claude Opus 4.1",
        "description": "Most capable Anthropic agent; slower and pricier.",
        "provider": "anthropic",
        "model": "claude-opus-4-1-20250805",
        "is_computer_use_model": True,
        "max_tokens": 8192,
        "input_usd_per_mtok": 15.0,
        "output_usd_per_mtok": 75.0,
    },
    {
        "id": MODEL_HAIKU,
        "name": "Claude Haiku 4.5",
        "description": "Fast model for cache detection and checks.",
        "provider": "anthropic",
        "model": "claude-haiku-4-5-20251001",
        "is_computer_use_model": False,
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 5.0,
    },
    {
        "id": MODEL_OPENAI_CUA,
        "name": "OpenAI Computer Use",
        "description": "OpenAI's computer-use-preview model.",
        "provider": "openai",
        "model": "computer-use-preview",
        "is_computer_use_model": True,
        "input_usd_per_mtok": 3.0,
        "output_usd_per_mtok": 12.0,
    },
    {
        "id": MODEL_GPT41_MINI,
        "name": "GPT-4.1 mini",
        "description": "Cheap text model, not for driving a desktop.",
        "provider": "openai",
        "model": "gpt-4.1-mini",
        "is_computer_use_model": False,
        "temperature": 0.2,
        "input_usd_per_mtok": 0.4,
        "output_usd_per_mtok": 1.6,
    },
    {
        "id": MODEL_GEMINI_CU,
        "name": "Gemini 2.5 Computer Use",
        "description": "Google's computer-use preview (not priced yet).",
        "provider": "google",
        "model": "gemini-2.5-computer-use-preview-10-2025",
        "is_computer_use_model": True,
        "input_usd_per_mtok": None,
        "output_usd_per_mtok": None,
    },
    {
        "id": MODEL_GEMINI_FLASH,
        "name": "Gemini 2.5 Flash",
        "description": "Archived: replaced by newer Flash versions.",
        "provider": "google",
        "model": "gemini-2.5-flash",
        "is_computer_use_model": False,
        "is_archived": True,
        "input_usd_per_mtok": 0.3,
        "output_usd_per_mtok": 2.5,
    },
    {
        "id": MODEL_SONNET_37,
        "name": "Claude Sonnet 3.7 (legacy)",
        "description": "Archived computer-use agent kept for old workflows.",
        "provider": "anthropic",
        "model": "claude-3-7-sonnet-20250219",
        "is_computer_use_model": True,
        "is_archived": True,
        "input_usd_per_mtok": 3.0,
        "output_usd_per_mtok": 15.0,
    },
]

# --- Tags -----------------------------------------------------------------------------------------

TAGS = [
    {"id": seed_id("tag:healthcare"), "name": "Healthcare", "emoji": "🩺", "color": "#2f855a"},
    {"id": seed_id("tag:finance"), "name": "Finance", "emoji": "💶", "color": "#2b6cb0"},
    {"id": seed_id("tag:sales"), "name": "Sales", "emoji": "📇", "color": "#b7791f"},
    {"id": seed_id("tag:operations"), "name": "Operations", "emoji": "🛠", "color": "#4a5568"},
    {"id": seed_id("tag:production"), "name": "Production", "emoji": "✅", "color": "#276749"},
]

# --- Workflows ------------------------------------------------------------------------------------

WORKFLOW_ELIGIBILITY = seed_id("workflow:eligibility")
WORKFLOW_INVOICE = seed_id("workflow:invoice")
WORKFLOW_CRM = seed_id("workflow:crm")
WORKFLOW_TIMESHEET = seed_id("workflow:timesheet")
WORKFLOW_REPORT = seed_id("workflow:report")
WORKFLOW_HELLO = seed_id("workflow:hello")


def _schema(properties: dict, required: list[str]) -> str:
    return json.dumps(
        {"type": "object", "properties": properties, "required": required},
        indent=2,
    )


def _check(name: str, key: str, description: str, prompt: str, order: int = 0) -> dict:
    return {
        "id": str(seed_id(f"check:{key}")),
        "name": name,
        "description": description,
        "type": "output_data_agentic_check",
        "check_prompt": prompt,
        "order": order,
        "organization_id": "org_sandbox",
        "created_at": "2025-01-06T09:00:00Z",
        "updated_at": "2025-01-06T09:00:00Z",
    }


def _workflows(now) -> list[dict]:
    return [
        {
            "id": WORKFLOW_ELIGIBILITY,
            "name": "Check insurance eligibility",
            "scenario": Scenario.QUICK,
            "tags": ["tag:healthcare", "tag:production"],
            "is_webhooks_enabled": True,
            "main_prompt": (
                "Check insurance eligibility for {patient_name} (born {date_of_birth}).\n"
                "Open the {payer} provider portal, sign in as the clinic user with the password "
                "{$portal_password}, search the member, and report the plan name, whether the "
                "coverage is active, and the copay."
            ),
            "input_schema": _schema(
                {
                    "patient_name": {"type": "string", "minLength": 1, "title": "Patient name"},
                    "date_of_birth": {
                        "type": "string",
                        "format": "date",
                        "title": "Date of birth",
                    },
                    "payer": {
                        "type": "string",
                        "enum": ["Aetna", "Cigna", "UnitedHealthcare", "Medicare"],
                        "title": "Payer",
                    },
                    "$portal_password": {
                        "type": "string",
                        "minLength": 1,
                        "title": "Portal password",
                    },
                },
                ["patient_name", "date_of_birth", "payer"],
            ),
        },
        {
            "id": WORKFLOW_INVOICE,
            "name": "Reconcile invoice totals",
            "scenario": Scenario.SLOW,
            "tags": ["tag:finance"],
            "is_webhooks_enabled": True,
            "includes_file_exports": True,
            "model_metadata": {
                "main_agent_model_id": str(MODEL_OPUS),
                "cache_detection_model_id": str(MODEL_HAIKU),
                "fallback_model_1_id": None,
                "fallback_model_2_id": None,
            },
            "main_prompt": (
                "Reconcile the invoice uploaded to ~/CyberdeskTransfers/{invoice_filename}.\n"
                "Open it, check that its {line_item_count} line items add up to {invoice_total}"
                " (tax included: {include_tax}), enter the totals in the ERP and export the "
                "reconciliation as a CSV."
            ),
            "input_schema": _schema(
                {
                    "invoice_filename": {
                        "type": "string",
                        "title": "Invoice file name",
                        "description": "Name of the PDF sent as a file input",
                    },
                    # JSON Schema has no file type: `format: binary` marks a property whose
                    # value travels in `file_inputs` (an attachment), not in `input_values`.
                    "invoice_pdf": {
                        "type": "string",
                        "format": "binary",
                        "title": "Invoice PDF",
                        "description": "The invoice itself, uploaded to the machine",
                    },
                    "invoice_total": {"type": "number", "minimum": 0, "title": "Invoice total"},
                    "line_item_count": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 500,
                        "title": "Line items",
                    },
                    "include_tax": {"type": "boolean", "title": "Total includes tax"},
                },
                ["invoice_filename", "invoice_total", "line_item_count"],
            ),
            "post_run_checks": [
                _check(
                    "Totals match",
                    "invoice-totals",
                    "The exported totals equal the invoice total",
                    "Does output_data show totals equal to the invoice total?",
                )
            ],
        },
        {
            "id": WORKFLOW_CRM,
            "name": "Update CRM contact",
            "scenario": Scenario.FLAKY,
            "failure_rate": 0.4,
            "tags": ["tag:sales"],
            "is_webhooks_enabled": True,
            "main_prompt": (
                "Update the CRM contact {contact_email}.\n"
                "Sign in with the API key {$crm_api_key}, add the tags {tags_to_add} and "
                "mark the contact as a customer: {mark_as_customer}."
            ),
            "input_schema": _schema(
                {
                    "contact_email": {
                        "type": "string",
                        "format": "email",
                        "title": "Contact email",
                    },
                    "tags_to_add": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "maxItems": 10,
                        "title": "Tags to add",
                    },
                    "mark_as_customer": {"type": "boolean", "title": "Mark as customer"},
                    "$crm_api_key": {"type": "string", "minLength": 8, "title": "CRM API key"},
                },
                ["contact_email", "$crm_api_key"],
            ),
        },
        {
            "id": WORKFLOW_TIMESHEET,
            "name": "Submit weekly timesheet",
            "scenario": Scenario.FAILING_CHECK,
            "tags": ["tag:operations"],
            "is_webhooks_enabled": True,
            "main_prompt": (
                "Submit a timesheet of {hours} hours on project {project} for the week ending "
                "{week_ending}, then copy the confirmation number into the output."
            ),
            "input_schema": _schema(
                {
                    "hours": {"type": "integer", "minimum": 0, "maximum": 80, "title": "Hours"},
                    "project": {
                        "type": "string",
                        "enum": ["Apollo", "Borealis", "Cassini"],
                        "title": "Project",
                    },
                    "week_ending": {"type": "string", "format": "date", "title": "Week ending"},
                },
                ["hours", "project", "week_ending"],
            ),
            "post_run_checks": [
                _check(
                    "Confirmation number captured",
                    "timesheet-confirmation",
                    "The output holds the portal's confirmation number",
                    "Does output_data contain a confirmation number issued by the portal?",
                )
            ],
        },
        {
            "id": WORKFLOW_REPORT,
            "name": "Export monthly report",
            "scenario": Scenario.QUICK,
            "tags": ["tag:finance", "tag:production"],
            "is_webhooks_enabled": True,
            "includes_file_exports": True,
            "main_prompt": (
                "Export the {month} {year} revenue report from the reporting tool as CSV."
            ),
            "input_schema": _schema(
                {
                    "month": {
                        "type": "string",
                        "enum": [
                            "January",
                            "February",
                            "March",
                            "April",
                            "May",
                            "June",
                            "July",
                            "August",
                            "September",
                            "October",
                            "November",
                            "December",
                        ],
                        "title": "Month",
                    },
                    "year": {"type": "integer", "minimum": 2020, "maximum": 2030, "title": "Year"},
                },
                ["month", "year"],
            ),
            "workflow_metadata": {
                "has_unaddressed_error": True,
                "last_errored_run_start": (now - timedelta(hours=3)).isoformat(),
                "last_errored_run_uuid": str(seed_id("run:report-last-error")),
            },
        },
        {
            "id": WORKFLOW_HELLO,
            "name": "Open Notepad and say hello",
            "scenario": Scenario.QUICK,
            "tags": [],
            "is_webhooks_enabled": False,
            "main_prompt": "Open Notepad and type 'Hello from Cyberdesk'.\nThen save the file.",
            "input_schema": None,
        },
    ]


# What a workflow has unless its entry says otherwise (so `reset` restores every field).
_WORKFLOW_BASE = {
    "failure_rate": 0.0,
    "includes_file_exports": False,
    "model_metadata": None,
    "workflow_metadata": None,
    "post_run_checks": [],
    "old_versions": [],
    "output_schema": None,
    "terminal_command_allowlist": None,
    "post_run_check_failure_cleanup_prompt": None,
}


@transaction.atomic
def seed_demo_data(*, reset: bool = False) -> dict[str, int]:
    """Create the demo rows that are missing (all of them with `reset`). Returns counts."""
    now = timezone.now()
    created = {"model_configurations": 0, "tags": 0, "workflows": 0}
    for fields in MODEL_CONFIGURATIONS:
        defaults = {key: value for key, value in fields.items() if key != "id"}
        created["model_configurations"] += _put(ModelConfiguration, fields["id"], defaults, reset)
    tags = {}
    for order, fields in enumerate(TAGS):
        defaults = {"order": order, **{k: v for k, v in fields.items() if k != "id"}}
        created["tags"] += _put(Tag, fields["id"], defaults, reset)
        tags[f"tag:{fields['name'].lower()}"] = fields["id"]
    for age, fields in enumerate(_workflows(now)):
        defaults = {
            **_WORKFLOW_BASE,
            **{key: value for key, value in fields.items() if key not in ("id", "tags")},
        }
        # Stagger the timestamps so "ordered by updated_at" has a stable, visible order.
        stamp = now - timedelta(days=age + 1)
        defaults.update({"created_at": stamp - timedelta(days=30), "updated_at": stamp})
        is_new = _put(Workflow, fields["id"], defaults, reset)
        created["workflows"] += is_new
        if is_new or reset:
            Workflow.objects.get(pk=fields["id"]).tags.set([tags[key] for key in fields["tags"]])
    return created


def _put(model, pk, defaults: dict, reset: bool) -> int:
    if reset:
        _, is_new = model.objects.update_or_create(pk=pk, defaults=defaults)
    else:
        _, is_new = model.objects.get_or_create(pk=pk, defaults=defaults)
    return int(is_new)
