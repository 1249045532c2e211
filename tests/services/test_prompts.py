"""Prompt versions: variables, numbering, immutability, labels and their history, resolution."""

import threading
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.db.models.query import QuerySet

from launcher.models import (
    PromptLabel,
    PromptLabelMove,
    PromptMode,
    PromptVersion,
    PromptVersionImmutable,
    Workflow,
    sha256_text,
)
from launcher.selectors import prompt_choice_default, prompt_choices
from launcher.services.prompts import (
    PromotionRefused,
    PromptChoiceInvalid,
    PromptLabelInvalid,
    PromptTextInvalid,
    prompt_choice_parse,
    prompt_import_stored,
    prompt_label_move,
    prompt_publish,
    prompt_resolve,
    prompt_resolve_choice,
    prompt_variable_warnings,
    prompt_variables,
    prompt_version_create,
)

SCHEMA = {
    "type": "object",
    "properties": {"patient": {"type": "object"}, "city": {"type": "string"}, "$api_key": {}},
}


def make_workflow(**extra) -> Workflow:
    values = {"name": "Intake", "main_prompt": "Stored prompt for {city}", "input_schema": SCHEMA}
    values.update(extra)
    return Workflow.objects.create(id=uuid.uuid4(), **values)


@pytest.fixture
def workflow(db):
    return make_workflow()


@pytest.fixture
def production_mover(django_user_model):
    user = django_user_model.objects.create_user("rita-release", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="launcher", codename="move_production_label")
    )
    return user


# --- Variables ----------------------------------------------------------------------------------


def test_it_finds_plain_and_secret_variables_by_their_root():
    plain, secret = prompt_variables(
        "Hi {name}, born {patient.dob}, item {items[0].id}, key {$api_key}"
    )
    assert plain == {"name", "patient", "items"}
    assert secret == {"api_key"}


def test_runtime_and_escaped_variables_are_not_inputs():
    plain, secret = prompt_variables(r"Use {{today}} and \{literal} and \{$also} and \{{kept}}")
    assert plain == set()
    assert secret == set()


def test_it_warns_about_a_variable_the_schema_does_not_define(workflow):
    warnings = prompt_variable_warnings(workflow, "Go to {city} for {patient.name} on {date}")
    assert warnings == ["{date} is not defined in the workflow's input schema."]


def test_it_warns_about_a_secret_used_as_a_plain_variable(workflow):
    warnings = prompt_variable_warnings(workflow, "Log in with {api_key}")
    assert warnings == ["{api_key} uses the secret input api_key as plain text: write {$api_key}."]


def test_it_warns_about_an_undefined_secret_and_accepts_a_defined_one(workflow):
    assert prompt_variable_warnings(workflow, "Use {$api_key}") == []
    assert prompt_variable_warnings(workflow, "Use {$password}") == [
        "{$password} is not defined in the workflow's input schema."
    ]


def test_a_workflow_without_schema_defines_no_variable(db):
    workflow = make_workflow(input_schema=None)
    assert prompt_variable_warnings(workflow, "Plain text, {{runtime}} only") == []
    assert len(prompt_variable_warnings(workflow, "{a} {b}")) == 2


# --- Versions -----------------------------------------------------------------------------------


def test_versions_are_numbered_per_workflow_with_the_hash_of_their_text(workflow, staff):
    other = make_workflow(name="Other")
    first = prompt_version_create(workflow=workflow, text="one", note="first", author=staff)
    second = prompt_version_create(workflow=workflow, text="two")
    elsewhere = prompt_version_create(workflow=other, text="one")
    assert (first.number, second.number, elsewhere.number) == (1, 2, 1)
    assert first.sha256 == sha256_text("one")
    assert first.author == staff and first.note == "first"


def test_an_empty_text_is_refused(workflow):
    with pytest.raises(PromptTextInvalid):
        prompt_version_create(workflow=workflow, text="   \n")
    assert not PromptVersion.objects.exists()


def test_a_version_cannot_be_based_on_another_workflows_version(workflow):
    foreign = prompt_version_create(workflow=make_workflow(name="Other"), text="x")
    with pytest.raises(PromptTextInvalid):
        prompt_version_create(workflow=workflow, text="y", based_on=foreign)


def test_a_saved_version_never_changes(workflow):
    version = prompt_version_create(workflow=workflow, text="original")
    version.text = "tampered"
    with pytest.raises(PromptVersionImmutable):
        version.save()
    stored = PromptVersion.objects.get(pk=version.pk)
    assert stored.text == "original"
    assert stored.sha256 == sha256_text("original")


def test_editing_saves_a_new_version_that_remembers_its_origin(workflow, staff):
    original = prompt_version_create(workflow=workflow, text="original")
    edited = prompt_version_create(workflow=workflow, text="edited", based_on=original)
    assert edited.number == 2 and edited.based_on == original
    assert PromptVersion.objects.get(pk=original.pk).text == "original"


def test_a_number_taken_by_a_concurrent_save_is_retried(workflow):
    """Simulate the race: the first attempt reads a stale maximum, collides, and retries."""
    prompt_version_create(workflow=workflow, text="v1 saved by someone else")
    real_aggregate = QuerySet.aggregate
    calls = []

    def stale_then_real(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return {"newest": 0}
        return real_aggregate(self, *args, **kwargs)

    from unittest import mock

    with mock.patch.object(QuerySet, "aggregate", stale_then_real):
        version = prompt_version_create(workflow=workflow, text="mine")
    assert version.number == 2
    assert len(calls) == 2
    assert sorted(PromptVersion.objects.values_list("number", flat=True)) == [1, 2]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks across threads need PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_get_distinct_consecutive_numbers():
    workflow = make_workflow()
    errors = []

    def save_three(index):
        try:
            for step in range(3):
                prompt_version_create(workflow=workflow, text=f"thread {index} step {step}")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=save_three, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = sorted(
        PromptVersion.objects.filter(workflow=workflow).values_list("number", flat=True)
    )
    assert numbers == list(range(1, 19))


# --- Labels -------------------------------------------------------------------------------------


def test_creating_a_label_records_its_first_move(workflow, prompt_editor):
    v1 = prompt_version_create(workflow=workflow, text="one")
    label = prompt_label_move(
        workflow=workflow, name="staging", version=v1, user=prompt_editor, reason="first try"
    )
    assert label.version == v1
    move = PromptLabelMove.objects.get(label=label)
    assert move.from_version is None and move.to_version == v1
    assert move.moved_by == prompt_editor and move.reason == "first try"


def test_moving_a_label_records_who_when_from_to_and_why(workflow, prompt_editor):
    v1 = prompt_version_create(workflow=workflow, text="one")
    v2 = prompt_version_create(workflow=workflow, text="two")
    prompt_label_move(workflow=workflow, name="staging", version=v1, user=prompt_editor)
    prompt_label_move(
        workflow=workflow, name="staging", version=v2, user=prompt_editor, reason="fixes typo"
    )
    label = PromptLabel.objects.get(workflow=workflow, name="staging")
    assert label.version == v2
    latest_move = label.moves.order_by("-pk").first()
    assert (latest_move.from_version, latest_move.to_version) == (v1, v2)
    assert latest_move.reason == "fixes typo" and latest_move.moved_at is not None
    assert label.moves.count() == 2


def test_pointing_a_label_where_it_already_points_records_nothing(workflow, prompt_editor):
    v1 = prompt_version_create(workflow=workflow, text="one")
    prompt_label_move(workflow=workflow, name="staging", version=v1, user=prompt_editor)
    prompt_label_move(workflow=workflow, name="staging", version=v1, user=prompt_editor)
    assert PromptLabelMove.objects.count() == 1


def test_latest_cannot_be_set_by_hand(workflow, production_mover):
    v1 = prompt_version_create(workflow=workflow, text="one")
    for name in ("latest", "Latest", " latest "):
        with pytest.raises(PromptLabelInvalid):
            prompt_label_move(workflow=workflow, name=name, version=v1, user=production_mover)
    assert not PromptLabel.objects.exists()


def test_the_database_refuses_a_stored_latest_label(workflow):
    v1 = prompt_version_create(workflow=workflow, text="one")
    with pytest.raises(IntegrityError), transaction.atomic():
        PromptLabel.objects.create(workflow=workflow, name="latest", version=v1)


def test_a_label_cannot_point_at_another_workflows_version(workflow, prompt_editor):
    foreign = prompt_version_create(workflow=make_workflow(name="Other"), text="x")
    with pytest.raises(PromptLabelInvalid):
        prompt_label_move(workflow=workflow, name="staging", version=foreign, user=prompt_editor)


def test_moving_production_needs_its_own_permission(workflow, prompt_editor, production_mover):
    v1 = prompt_version_create(workflow=workflow, text="one")
    with pytest.raises(PermissionDenied):
        prompt_label_move(workflow=workflow, name="production", version=v1, user=prompt_editor)
    assert not PromptLabel.objects.exists()
    # With the permission, the evidence gate is next (tests/services/test_promotion.py).
    with pytest.raises(PromotionRefused, match="No finished batch has runs of v1"):
        prompt_label_move(workflow=workflow, name="Production", version=v1, user=production_mover)
    assert not PromptLabel.objects.exists()


# --- Resolution ---------------------------------------------------------------------------------


@pytest.fixture
def versions(workflow, production_mover):
    v1 = prompt_version_create(workflow=workflow, text="one {city}", note="first")
    v2 = prompt_version_create(workflow=workflow, text="two {city}", note="second")
    v3 = prompt_version_create(workflow=workflow, text="three {typo}", note="third")
    # Set-up data: the gate that guards production moves is tested on its own.
    PromptLabel.objects.create(workflow=workflow, name="production", version=v2, protected=True)
    prompt_label_move(workflow=workflow, name="staging", version=v1, user=production_mover)
    return v1, v2, v3


def test_the_stored_prompt_sends_nothing_and_records_the_stored_hash(workflow):
    resolved = prompt_resolve(workflow=workflow, mode=PromptMode.STORED)
    assert resolved.text is None and resolved.version is None
    assert resolved.sha256 == sha256_text("Stored prompt for {city}")
    assert resolved.run_fields() == {
        "prompt_mode": "stored",
        "prompt_label": "",
        "prompt_version": None,
        "prompt_sha256": sha256_text("Stored prompt for {city}"),
        "canary_id": None,
        "canary_arm": "",
    }


def test_latest_resolves_to_the_newest_version(workflow, versions):
    resolved = prompt_resolve(workflow=workflow, mode=PromptMode.LATEST)
    assert resolved.version == versions[2] and resolved.text == "three {typo}"
    assert resolved.description == "latest (v3)"


def test_a_label_resolves_to_the_version_it_points_at(workflow, versions):
    resolved = prompt_resolve(workflow=workflow, mode=PromptMode.LABEL, label="production")
    assert resolved.version == versions[1]
    assert resolved.sha256 == sha256_text("two {city}")
    assert resolved.run_fields()["prompt_label"] == "production"
    assert resolved.description == "production (v2)"


def test_a_pinned_version_resolves_to_itself(workflow, versions):
    resolved = prompt_resolve(workflow=workflow, mode=PromptMode.PINNED, version_id=versions[0].pk)
    assert resolved.version == versions[0] and resolved.text == "one {city}"
    assert resolved.choice.value == f"version:{versions[0].pk}"


def test_the_label_latest_means_the_newest_version(workflow, versions):
    resolved = prompt_resolve(workflow=workflow, mode=PromptMode.LABEL, label="latest")
    assert resolved.mode == PromptMode.LATEST and resolved.version == versions[2]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": PromptMode.LABEL, "label": "nope"},
        {"mode": PromptMode.PINNED, "version_id": 999999},
        {"mode": "sideways"},
    ],
)
def test_an_unknown_choice_is_refused(workflow, versions, kwargs):
    with pytest.raises(PromptChoiceInvalid):
        prompt_resolve(workflow=workflow, **kwargs)


def test_latest_without_versions_is_refused(workflow):
    with pytest.raises(PromptChoiceInvalid, match="no prompt versions"):
        prompt_resolve(workflow=workflow, mode=PromptMode.LATEST)


def test_another_workflows_label_or_version_is_refused(workflow, versions, production_mover):
    other = make_workflow(name="Other")
    foreign = prompt_version_create(workflow=other, text="x")
    prompt_label_move(workflow=other, name="canary", version=foreign, user=production_mover)
    with pytest.raises(PromptChoiceInvalid):
        prompt_resolve(workflow=workflow, mode=PromptMode.PINNED, version_id=foreign.pk)
    with pytest.raises(PromptChoiceInvalid):
        prompt_resolve(workflow=workflow, mode=PromptMode.LABEL, label="canary")
    with pytest.raises(PromptChoiceInvalid):
        prompt_resolve(workflow=other, mode=PromptMode.PINNED, version_id=versions[0].pk)


@pytest.mark.parametrize(
    "value, mode, label",
    [
        ("stored", "stored", ""),
        ("latest", "latest", ""),
        ("label:production", "label", "production"),
        ("label:latest", "latest", ""),
    ],
)
def test_choice_strings_parse_and_round_trip(value, mode, label):
    choice = prompt_choice_parse(value)
    assert (choice.mode, choice.label) == (mode, label)
    assert prompt_choice_parse(choice.value) == choice


@pytest.mark.parametrize(
    "value",
    [
        "",
        "pinned",
        "version:abc",
        "label:",
        "version:",
        "x:y",
        "version:²",
        "version:-1",
        "label:a\x00",
    ],
)
def test_malformed_choice_strings_are_refused(value):
    with pytest.raises(PromptChoiceInvalid):
        prompt_choice_parse(value)


def test_resolving_a_choice_string(workflow, versions):
    assert prompt_resolve_choice(workflow=workflow, choice="label:staging").version == versions[0]
    pinned = prompt_resolve_choice(workflow=workflow, choice=f"version:{versions[1].pk}")
    assert pinned.version == versions[1] and pinned.mode == PromptMode.PINNED


# --- Choices for the picker ---------------------------------------------------------------------


def test_choices_list_stored_latest_labels_then_versions_with_warning_marks(
    workflow, versions, django_assert_num_queries
):
    v1, v2, v3 = versions
    with django_assert_num_queries(2):
        choices = prompt_choices(workflow)
    assert choices == [
        ("stored", "Workflow's stored prompt"),
        ("latest", "Latest (v3) ⚠"),
        ("label:production", "production (v2)"),
        ("label:staging", "staging (v1)"),
        (f"version:{v3.pk}", "v3 — third ⚠"),
        (f"version:{v2.pk}", "v2 — second"),
        (f"version:{v1.pk}", "v1 — first"),
    ]
    for value, _ in choices:
        prompt_resolve_choice(workflow=workflow, choice=value)


def test_a_workflow_without_versions_offers_only_its_stored_prompt(workflow):
    assert prompt_choices(workflow) == [("stored", "Workflow's stored prompt")]
    assert prompt_choice_default(workflow) == "stored"


def test_the_default_choice_is_production_when_it_exists(workflow, versions):
    assert prompt_choice_default(workflow) == "label:production"


# --- Importing and publishing the workflow's stored prompt --------------------------------------


@pytest.fixture
def api():
    from tests.fake_cyberdesk import FakeCyberdesk

    fake = FakeCyberdesk()
    fake.add_workflow()
    with fake.serve():
        yield fake


@pytest.fixture
def mirrored(api, db):
    from launcher.services.workflows import workflows_sync

    return workflows_sync()[0]


@pytest.fixture
def publisher(django_user_model):
    user = django_user_model.objects.create_user("pia-publisher", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="launcher", codename="change_workflow")
    )
    return user


def test_importing_saves_the_fresh_stored_prompt_as_a_new_version(api, mirrored, prompt_editor):
    api.workflows[str(mirrored.pk)]["main_prompt"] = "Fresh upstream text"
    version, created = prompt_import_stored(workflow=mirrored, user=prompt_editor)
    assert created and version.number == 1
    assert version.text == "Fresh upstream text" and version.author == prompt_editor
    again, created_again = prompt_import_stored(workflow=mirrored, user=prompt_editor)
    assert (again, created_again) == (version, False)


def test_importing_nothing_when_the_api_is_down(api, mirrored, prompt_editor):
    from launcher.cyberdesk import errors

    api.fail_with = 503
    with pytest.raises(errors.CyberdeskError):
        prompt_import_stored(workflow=mirrored, user=prompt_editor)
    assert not PromptVersion.objects.exists()


def test_publishing_patches_the_workflows_prompt_and_refreshes_the_mirror(api, mirrored, publisher):
    version = prompt_version_create(workflow=mirrored, text="Published text {portal}")
    workflow = prompt_publish(version=version, user=publisher)
    assert api.patches() == [{"main_prompt": "Published text {portal}"}]
    assert workflow.main_prompt == "Published text {portal}"
    assert Workflow.objects.get(pk=mirrored.pk).main_prompt == "Published text {portal}"


def test_publishing_needs_its_own_permission(api, mirrored, staff, prompt_editor):
    version = prompt_version_create(workflow=mirrored, text="x")
    with pytest.raises(PermissionDenied):
        prompt_publish(version=version, user=staff)
    assert prompt_editor.has_perm("launcher.change_workflow")  # editors may publish
    assert api.patches() == []
