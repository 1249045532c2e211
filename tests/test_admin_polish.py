# ruff: noqa: F811  (the fixtures of tests/test_admin.py, imported, are the arguments)
"""The prompt editors' admin, polished (issue 14): unknown variables are saved only on purpose
and such a version is not "Latest" until confirmed; small slips (a message that began "V4", the
indented "Variable problems")."""

import pytest
from django.urls import reverse

from launcher.models import PromptVersion, Workflow
from launcher.selectors import prompt_choices
from launcher.services.prompts import prompt_latest_version, prompt_version_create
from tests.cyberdesk.payloads import WORKFLOW_ID
from tests.test_admin import _client, api, editor, release_manager, v1, workflow  # noqa: F401

pytestmark = pytest.mark.django_db
TYPO = "Open {portal} for {patient_nme}"


def test_saving_unknown_variables_asks_for_save_with_unknown_variables(editor, workflow, v1):
    url = reverse("admin:launcher_promptversion_add")
    values = {"workflow": WORKFLOW_ID, "text": TYPO, "note": "typo"}

    first = editor.post(url, {**values, "_save": "1"})

    html = first.content.decode()
    assert first.status_code == 200
    assert PromptVersion.objects.count() == 1  # only v1: nothing saved
    assert "{patient_nme} is not defined" in html
    assert 'name="_save_unknown" value="Save with unknown variables"' in html

    editor.post(url, {**values, "_save_unknown": "1"})

    saved = PromptVersion.objects.get(number=2)
    assert saved.text == TYPO and saved.variables_confirmed


def test_an_unconfirmed_version_is_not_latest_until_an_editor_confirms_it(
    editor, workflow, v1, prompt_editor
):
    typo = prompt_version_create(
        workflow=workflow, text=TYPO, author=prompt_editor, confirm_unknown_variables=False
    )

    assert not typo.variables_confirmed
    assert prompt_latest_version(workflow) == v1
    assert ("latest", "Latest (v1)") in prompt_choices(workflow)
    page = editor.get(reverse("admin:launcher_promptversion_change", args=[typo.pk]))
    assert "Unknown variables not confirmed" in page.content.decode()

    editor.post(reverse("admin:launcher_promptversion_confirm_variables", args=[typo.pk]))

    typo.refresh_from_db()
    assert typo.variables_confirmed and typo.text == TYPO
    assert prompt_latest_version(Workflow.objects.get()) == typo


def test_a_version_without_problems_saves_at_once(editor, workflow, v1):
    editor.post(
        reverse("admin:launcher_promptversion_add"),
        {"workflow": WORKFLOW_ID, "text": "Open {portal} for {month}", "_save": "1"},
    )

    assert PromptVersion.objects.get(number=2).variables_confirmed


def test_the_publish_message_keeps_its_lower_case_v(api, release_manager, v1):
    client = _client(release_manager)

    response = client.post(
        reverse("admin:launcher_promptversion_publish", args=[v1.pk]), follow=True
    )

    html = response.content.decode()
    assert "Published: v1 is now the stored prompt of Invoices." in html
    assert "V1 is now" not in html


def test_variable_problems_are_a_list_of_our_own_class(editor, workflow, prompt_editor):
    version = prompt_version_create(workflow=workflow, text=TYPO, author=prompt_editor)

    html = editor.get(
        reverse("admin:launcher_promptversion_change", args=[version.pk])
    ).content.decode()

    assert '<ul class="variable-problems"><li>' in html
