"""The admin as the prompt editors' product: versions never change, edits go through a diff,
labels move with their history, publishing asks first, and each door needs its permission."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from launcher.models import (
    ModelOption,
    ModelOptionChange,
    PromptLabel,
    PromptLabelMove,
    PromptVersion,
    Workflow,
    sha256_text,
)
from launcher.services.prompts import prompt_label_move, prompt_version_create
from tests.csrf import csrf_headers
from tests.cyberdesk.payloads import WORKFLOW_ID
from tests.fake_cyberdesk import FakeCyberdesk

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"portal": {}, "month": {}, "$password": {}}}


def _perms(*codenames):
    return Permission.objects.filter(content_type__app_label="launcher", codename__in=codenames)


def _client(user) -> Client:
    # The admin's own forms carry CSRF tokens; these tests exercise its flows.
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    fake.add_workflow()
    with fake.serve():
        yield fake


@pytest.fixture
def workflow(db):
    from django.utils import timezone

    return Workflow.objects.create(
        id=WORKFLOW_ID,
        name="Invoices",
        main_prompt="Stored {portal}",
        input_schema=SCHEMA,
        synced_at=timezone.now(),
    )


@pytest.fixture
def v1(workflow, prompt_editor):
    return prompt_version_create(
        workflow=workflow,
        text="Open {portal}\nDownload {month}",
        note="first",
        author=prompt_editor,
    )


@pytest.fixture
def editor(prompt_editor):
    return _client(prompt_editor)


@pytest.fixture
def release_manager(django_user_model):
    user = django_user_model.objects.create_user("rita-release", password="pw", is_staff=True)
    user.user_permissions.add(
        *_perms(
            "view_promptversion",
            "add_promptlabel",
            "change_promptlabel",
            "view_promptlabel",
            "move_production_label",
            "change_workflow",
            "view_workflow",
        )
    )
    return user


# --- Who gets in --------------------------------------------------------------------------------


def test_non_staff_users_are_sent_to_the_admin_login(operator_client, outsider_client, v1):
    for client in (operator_client, outsider_client):
        for url in (
            reverse("admin:launcher_promptversion_add"),
            reverse("admin:launcher_promptversion_edit", args=[v1.pk]),
            reverse("admin:launcher_promptversion_publish", args=[v1.pk]),
        ):
            response = client.get(url)
            assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_prompt_permissions_cannot_add_or_edit(staff, v1):
    client = _client(staff)
    assert client.get(reverse("admin:launcher_promptversion_add")).status_code == 403
    assert client.get(reverse("admin:launcher_promptversion_edit", args=[v1.pk])).status_code == 403
    response = client.post(
        reverse("admin:launcher_promptversion_add"),
        {"workflow": WORKFLOW_ID, "text": "sneaky", "_save": "1"},
    )
    assert response.status_code == 403
    assert PromptVersion.objects.count() == 1


# --- Versions -----------------------------------------------------------------------------------


def test_an_editor_adds_a_version_and_sees_variable_warnings(editor, prompt_editor, workflow, v1):
    values = {"workflow": WORKFLOW_ID, "text": "Use {password} on {site}", "note": "n"}
    first = editor.post(reverse("admin:launcher_promptversion_add"), {**values, "_save": "1"})
    # Unknown variables are saved only on purpose (issue 14).
    assert first.status_code == 200 and PromptVersion.objects.filter(number=2).count() == 0
    assert "Save with unknown variables" in first.content.decode()
    response = editor.post(
        reverse("admin:launcher_promptversion_add"),
        {**values, "_save_unknown": "1"},
        follow=True,
    )
    assert response.status_code == 200
    version = PromptVersion.objects.get(number=2)
    assert version.author == prompt_editor and version.note == "n"
    assert version.sha256 == sha256_text("Use {password} on {site}")
    text = response.content.decode()
    assert "Saved v2 of Invoices" in text
    assert "write {$password}" in text
    assert "{site} is not defined" in text


def test_the_add_form_can_be_prefilled_with_a_workflow(editor, workflow):
    response = editor.get(reverse("admin:launcher_promptversion_add") + f"?workflow={WORKFLOW_ID}")
    assert response.status_code == 200
    assert str(response.context["form"].initial["workflow"].pk) == WORKFLOW_ID
    assert (
        editor.get(reverse("admin:launcher_promptversion_add") + "?workflow=nope").status_code
        == 200
    )


def test_an_empty_text_comes_back_with_an_error_and_the_typed_note(editor, workflow):
    response = editor.post(
        reverse("admin:launcher_promptversion_add"),
        {"workflow": WORKFLOW_ID, "text": "  ", "note": "kept", "_save": "1"},
    )
    assert response.status_code == 200
    assert "The prompt text cannot be empty." in response.content.decode()
    assert 'value="kept"' in response.content.decode()
    assert not PromptVersion.objects.exists()


def test_a_saved_version_is_read_only(editor, v1):
    url = reverse("admin:launcher_promptversion_change", args=[v1.pk])
    page = editor.get(url)
    assert page.status_code == 200
    assert "Edit (save as new version)" in page.content.decode()
    assert 'name="text"' not in page.content.decode()
    response = editor.post(url, {"text": "changed", "note": "x"})
    assert response.status_code == 403
    assert PromptVersion.objects.get(pk=v1.pk).text == "Open {portal}\nDownload {month}"
    delete = reverse("admin:launcher_promptversion_delete", args=[v1.pk])
    assert editor.post(delete, {"post": "yes"}).status_code == 403


def test_editing_shows_the_diff_before_saving_a_new_version(editor, v1):
    url = reverse("admin:launcher_promptversion_edit", args=[v1.pk])
    form = editor.get(url)
    assert form.context["form"].initial["text"] == v1.text
    new_text = "Open {portal}\nDownload {month} as PDF"
    # Asking to save straight away shows the review first and saves nothing.
    response = editor.post(url, {"text": new_text, "note": "pdf", "_save": "1"})
    assert response.status_code == 200
    assert PromptVersion.objects.count() == 1
    preview = response.context["preview"]
    assert [row.kind for row in preview["diff"]] == ["equal", "replace"]
    assert "Download {month} as PDF" in response.content.decode()
    assert "Save as new version" in response.content.decode()
    # Saving the reviewed text creates v2 based on v1; v1 is untouched.
    response = editor.post(
        url,
        {"text": new_text, "note": "pdf", "previewed_sha256": sha256_text(new_text), "_save": "1"},
    )
    assert response.status_code == 302
    v2 = PromptVersion.objects.get(number=2)
    assert v2.based_on == v1 and v2.text == new_text and v2.note == "pdf"
    assert PromptVersion.objects.get(pk=v1.pk).text == v1.text


def test_a_changed_text_after_the_review_is_reviewed_again(editor, v1):
    url = reverse("admin:launcher_promptversion_edit", args=[v1.pk])
    response = editor.post(
        url, {"text": "other text", "previewed_sha256": sha256_text("reviewed"), "_save": "1"}
    )
    assert response.status_code == 200 and response.context["preview"] is not None
    assert PromptVersion.objects.count() == 1


def test_editing_without_changes_saves_nothing(editor, v1):
    url = reverse("admin:launcher_promptversion_edit", args=[v1.pk])
    response = editor.post(url, {"text": v1.text, "previewed_sha256": v1.sha256, "_save": "1"})
    assert response.status_code == 200
    assert "there is nothing to save" in response.content.decode()
    assert PromptVersion.objects.count() == 1


# --- Publish and import -------------------------------------------------------------------------


def test_publishing_asks_for_confirmation_then_patches_the_workflow(api, release_manager, v1):
    client = _client(release_manager)
    url = reverse("admin:launcher_promptversion_publish", args=[v1.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "changes what every run without a prompt override uses" in page.content.decode()
    assert api.patches() == []
    response = client.post(url)
    assert response.status_code == 302
    assert api.patches() == [{"main_prompt": v1.text}]
    assert Workflow.objects.get(pk=WORKFLOW_ID).main_prompt == v1.text


def test_the_publish_action_leads_to_the_confirmation_page(api, release_manager, v1):
    client = _client(release_manager)
    response = client.post(
        reverse("admin:launcher_promptversion_changelist"),
        {"action": "publish_to_workflow", "_selected_action": [v1.pk]},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:launcher_promptversion_publish", args=[v1.pk])
    assert api.patches() == []


def test_publishing_needs_the_permission_and_a_csrf_token(api, staff_client, release_manager, v1):
    url = reverse("admin:launcher_promptversion_publish", args=[v1.pk])
    assert staff_client.get(url).status_code == 403
    assert staff_client.post(url, headers=csrf_headers(staff_client)).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(release_manager)
    assert strict.post(url).status_code == 403
    assert api.patches() == []


def test_a_failed_publish_says_so_and_changes_nothing(api, release_manager, v1):
    api.fail_with = 422
    response = _client(release_manager).post(
        reverse("admin:launcher_promptversion_publish", args=[v1.pk]), follow=True
    )
    assert "Nothing was published" in response.content.decode()
    assert Workflow.objects.get(pk=WORKFLOW_ID).main_prompt == "Stored {portal}"


def test_the_import_action_saves_the_stored_prompt_as_a_new_version(api, editor, workflow, v1):
    api.workflows[WORKFLOW_ID]["main_prompt"] = "Upstream text"
    response = editor.post(
        reverse("admin:launcher_workflow_changelist"),
        {"action": "import_stored_prompt", "_selected_action": [WORKFLOW_ID]},
        follow=True,
    )
    assert "imported the stored prompt as v2" in response.content.decode()
    assert PromptVersion.objects.get(number=2).text == "Upstream text"


def test_workflows_are_a_read_only_mirror(editor, workflow):
    url = reverse("admin:launcher_workflow_change", args=[WORKFLOW_ID])
    assert editor.get(url).status_code == 200
    assert editor.post(url, {"name": "renamed"}).status_code == 403
    assert editor.get(reverse("admin:launcher_workflow_add")).status_code == 403


# --- Labels -------------------------------------------------------------------------------------


def _history_inline(label=None):
    """The management form of the read-only "History" inline, as a browser would post it."""
    moves = list(label.moves.order_by("-moved_at")) if label else []
    data = {"moves-TOTAL_FORMS": len(moves), "moves-INITIAL_FORMS": len(moves)}
    for index, move in enumerate(moves):
        data[f"moves-{index}-id"] = move.pk
        data[f"moves-{index}-label"] = label.pk
    return data


def test_an_editor_sets_a_label_and_the_move_is_recorded(editor, prompt_editor, v1):
    response = editor.post(
        reverse("admin:launcher_promptlabel_add"),
        {
            "workflow": WORKFLOW_ID,
            "name": "staging",
            "version": v1.pk,
            "reason": "try it",
            **_history_inline(),
        },
    )
    assert response.status_code == 302
    move = PromptLabelMove.objects.get()
    assert (move.label.name, move.to_version, move.moved_by, move.reason) == (
        "staging",
        v1,
        prompt_editor,
        "try it",
    )


def test_moving_a_label_records_from_and_to(editor, prompt_editor, workflow, v1):
    v2 = prompt_version_create(workflow=workflow, text="two")
    label = prompt_label_move(workflow=workflow, name="staging", version=v1, user=prompt_editor)
    response = editor.post(
        reverse("admin:launcher_promptlabel_change", args=[label.pk]),
        {"version": v2.pk, "reason": "v2 is better", **_history_inline(label)},
    )
    assert response.status_code == 302
    move = PromptLabelMove.objects.order_by("-pk").first()
    assert (move.from_version, move.to_version, move.reason) == (v1, v2, "v2 is better")
    assert PromptLabel.objects.get(pk=label.pk).version == v2


def test_production_needs_its_own_permission_then_evidence(editor, release_manager, v1):
    data = {"workflow": WORKFLOW_ID, "name": "production", "version": v1.pk, "reason": "go"}
    response = editor.post(reverse("admin:launcher_promptlabel_add"), data)
    assert response.status_code == 200
    assert "Can move the production label" in response.content.decode()
    assert not PromptLabel.objects.exists()
    # The admin applies the same evidence rule as the prompts page (one service).
    response = _client(release_manager).post(reverse("admin:launcher_promptlabel_add"), data)
    assert response.status_code == 200
    assert "No finished batch has runs of v1" in response.content.decode()
    assert not PromptLabel.objects.exists()


def test_the_admin_overrides_with_the_permission_and_a_reason(release_manager, v1):
    release_manager.user_permissions.add(*_perms("promote_without_evidence"))
    client = _client(release_manager)
    data = {"workflow": WORKFLOW_ID, "name": "production", "version": v1.pk, **_history_inline()}
    response = client.post(
        reverse("admin:launcher_promptlabel_add"), {**data, "without_evidence": "on"}
    )
    assert response.status_code == 200
    assert "Write why it moves without evidence" in response.content.decode()
    response = client.post(
        reverse("admin:launcher_promptlabel_add"),
        {**data, "without_evidence": "on", "reason": "first version, already in use"},
    )
    assert response.status_code == 302
    move = PromptLabelMove.objects.get()
    assert move.without_evidence and move.reason == "first version, already in use"
    assert PromptLabel.objects.get().protected


def test_adding_a_label_whose_name_exists_records_a_move(editor, prompt_editor, workflow, v1):
    # Bug 14.9: the (workflow, name) constraint answered "already exists" instead.
    v2 = prompt_version_create(workflow=workflow, text="two")
    prompt_label_move(workflow=workflow, name="staging", version=v1, user=prompt_editor)
    response = editor.post(
        reverse("admin:launcher_promptlabel_add"),
        {
            "workflow": WORKFLOW_ID,
            "name": "staging",
            "version": v2.pk,
            "reason": "again",
            **_history_inline(),
        },
    )
    assert response.status_code == 302
    assert PromptLabel.objects.get().version == v2
    move = PromptLabelMove.objects.order_by("-pk").first()
    assert (move.from_version, move.to_version, move.reason) == (v1, v2, "again")


def test_label_history_rows_show_their_own_versions(admin_user, workflow, v1):
    # Bug 14.8: old rows showed the label's current target and were titled "1: None → 2".
    v2 = prompt_version_create(workflow=workflow, text="two")
    prompt_label_move(workflow=workflow, name="staging", version=v1, user=admin_user)
    prompt_label_move(workflow=workflow, name="staging", version=v2, user=admin_user)
    first = PromptLabelMove.objects.order_by("pk").first()
    assert str(first) == "staging: — → v1"
    assert str(PromptLabelMove.objects.order_by("pk").last()) == "staging: v1 → v2"
    text = _client(admin_user).get(reverse("admin:launcher_promptlabelmove_changelist")).content
    text = text.decode()
    assert "staging: v1 → v2" in text and "staging: — → v1" in text
    assert "staging → v2" not in text


def test_latest_cannot_be_set_and_labels_point_within_their_workflow(editor, v1):
    other = Workflow.objects.create(id="33333333-4444-4555-8666-777777777777", name="Other")
    foreign = prompt_version_create(workflow=other, text="x")
    response = editor.post(
        reverse("admin:launcher_promptlabel_add"),
        {"workflow": WORKFLOW_ID, "name": "latest", "version": v1.pk},
    )
    assert "always the newest version" in response.content.decode()
    response = editor.post(
        reverse("admin:launcher_promptlabel_add"),
        {"workflow": WORKFLOW_ID, "name": "staging", "version": foreign.pk},
    )
    assert "Pick a version of Invoices" in response.content.decode()
    assert not PromptLabel.objects.exists()


# --- Models -------------------------------------------------------------------------------------


def test_staff_toggling_a_model_in_the_admin_is_recorded(admin_user):
    option = ModelOption.objects.create(
        id="44444444-5555-4666-8777-888888888888", name="Sonnet", is_computer_use=True
    )
    client = _client(admin_user)
    response = client.post(
        reverse("admin:launcher_modeloption_changelist"),
        {"action": "disable_selected", "_selected_action": [option.pk]},
    )
    assert response.status_code == 302
    assert not ModelOption.objects.get(pk=option.pk).enabled
    change = ModelOptionChange.objects.get()
    assert (change.enabled, change.changed_by) == (False, admin_user)


def test_every_launcher_admin_page_opens_for_a_superuser(admin_user, workflow, v1):
    option = ModelOption.objects.create(id="55555555-5555-4555-8555-555555555555", name="M")
    label = prompt_label_move(workflow=workflow, name="staging", version=v1, user=admin_user)
    client = _client(admin_user)
    urls = [
        reverse("admin:launcher_workflow_changelist"),
        reverse("admin:launcher_workflow_change", args=[WORKFLOW_ID]),
        reverse("admin:launcher_promptversion_changelist"),
        reverse("admin:launcher_promptversion_add"),
        reverse("admin:launcher_promptversion_change", args=[v1.pk]),
        reverse("admin:launcher_promptversion_edit", args=[v1.pk]),
        reverse("admin:launcher_promptversion_publish", args=[v1.pk]),
        reverse("admin:launcher_promptlabel_changelist"),
        reverse("admin:launcher_promptlabel_add"),
        reverse("admin:launcher_promptlabel_change", args=[label.pk]),
        reverse("admin:launcher_promptlabelmove_changelist"),
        reverse("admin:launcher_canary_changelist"),
        reverse("admin:launcher_modeloption_changelist"),
        reverse("admin:launcher_modeloption_change", args=[option.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_saving_a_model_in_the_admin_records_the_change_and_keeps_prices(admin_user):
    option = ModelOption.objects.create(
        id="66666666-6666-4666-8666-666666666666", name="M", is_computer_use=True
    )
    response = _client(admin_user).post(
        reverse("admin:launcher_modeloption_change", args=[option.pk]),
        {
            "price_input_per_million": "2.5",
            "price_output_per_million": "",
            "changes-TOTAL_FORMS": "0",
            "changes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    option.refresh_from_db()
    assert not option.enabled  # the unchecked box disables it
    assert str(option.price_input_per_million) == "2.5000"
    assert ModelOptionChange.objects.get().changed_by == admin_user


@pytest.mark.parametrize(
    "query",
    [
        {"name": "\x00"},
        {"label__name": "\x00"},
        {"state": "prod\x00"},
        {"q": "\x00"},
    ],
)
def test_a_list_filter_holding_a_nul_character_is_refused_like_any_bad_filter(admin_client, query):
    # PostgreSQL refuses U+0000 in a query: without the check these were 500s there.
    for model in ("promptlabel", "promptlabelmove", "canary", "promptversion", "modeloption"):
        response = admin_client.get(reverse(f"admin:launcher_{model}_changelist"), query)
        assert response.status_code == 302, model
        assert response["Location"].endswith("?e=1")
