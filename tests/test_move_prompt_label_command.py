"""`manage.py move_prompt_label` applies the same rule as the app and the admin."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command

from launcher.models import PromptLabel, PromptLabelMove, Workflow
from launcher.services.prompts import prompt_version_create
from tests.services.test_promotion import make_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(django_user_model):
    workflow = Workflow.objects.create(id=uuid.uuid4(), name="Eligibility")
    v1 = prompt_version_create(workflow=workflow, text="one")
    v2 = prompt_version_create(workflow=workflow, text="two")
    PromptLabel.objects.create(workflow=workflow, name="production", version=v1)
    user = django_user_model.objects.create_user("ana", password="pw")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="launcher", codename="move_production_label")
    )
    return workflow, v1, v2


def test_the_command_refuses_without_evidence_and_moves_with_it(setup):
    workflow, v1, v2 = setup
    with pytest.raises(CommandError, match="No finished batch has runs of v2"):
        call_command("move_prompt_label", str(workflow.pk), "production", "2", "--user", "ana")
    assert PromptLabel.objects.get().version == v1
    batch = make_batch(workflow, {v1: (18, 2), v2: (19, 1)})
    call_command(
        "move_prompt_label",
        str(workflow.pk),
        "production",
        "2",
        "--user",
        "ana",
        "--batch",
        str(batch.pk),
        "--reason",
        "from the CLI",
    )
    move = PromptLabelMove.objects.get()
    assert (move.to_version, move.evidence_batch, move.reason) == (v2, batch, "from the CLI")


def test_the_command_needs_the_override_permission(setup):
    workflow, _, _ = setup
    with pytest.raises(CommandError, match="may promote without evidence"):
        call_command(
            "move_prompt_label",
            str(workflow.pk),
            "production",
            "2",
            "--user",
            "ana",
            "--without-evidence",
            "--reason",
            "urgent",
        )


@pytest.mark.parametrize(
    "args",
    [["not-a-uuid", "production", "2"], [None, "production", "9"], [None, "production", "2"]],
)
def test_bad_arguments_are_errors_not_tracebacks(setup, args):
    workflow = setup[0]
    args = [str(workflow.pk) if a is None else a for a in args]
    user = "nobody" if args[2] == "2" and args[0] != "not-a-uuid" else "ana"
    with pytest.raises(CommandError):
        call_command("move_prompt_label", *args, "--user", user)
