"""The evidence gate: a protected label moves on a finished batch's evidence, or with a reason
by someone allowed to override; every move is recorded with its evidence."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from launcher.models import (
    Batch,
    PromptLabel,
    PromptLabelMove,
    Run,
    RunStatus,
    Submission,
    Workflow,
)
from launcher.services.promotion import promotion_batches, promotion_evidence
from launcher.services.prompts import (
    PromotionRefused,
    prompt_label_move,
    prompt_label_set_protected,
    prompt_version_create,
)

pytestmark = pytest.mark.django_db


def _perm(codename):
    return Permission.objects.get(content_type__app_label="launcher", codename=codename)


@pytest.fixture
def workflow():
    return Workflow.objects.create(id=uuid.uuid4(), name="Eligibility", main_prompt="Stored")


@pytest.fixture
def versions(workflow):
    v1 = prompt_version_create(workflow=workflow, text="one")
    v2 = prompt_version_create(workflow=workflow, text="two")
    return v1, v2


@pytest.fixture
def release_manager(django_user_model):
    user = django_user_model.objects.create_user("ana", password="pw", is_staff=True)
    user.user_permissions.add(_perm("move_production_label"))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def overrider(django_user_model):
    user = django_user_model.objects.create_user("olga", password="pw", is_staff=True)
    user.user_permissions.add(_perm("move_production_label"), _perm("promote_without_evidence"))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def production(workflow, versions):
    return PromptLabel.objects.create(
        workflow=workflow, name="production", version=versions[0], protected=True
    )


def make_batch(workflow, cells, *, state=Batch.State.SUBMITTED):
    """cells: {version: (successes, failures[, unfinished])} → a batch with those runs."""
    batch = Batch.objects.create(workflow=workflow, state=state, is_matrix=True)
    runs = []
    for version, counts in cells.items():
        successes, failures, *rest = counts
        statuses = (
            [RunStatus.SUCCESS] * successes
            + [RunStatus.TASK_FAILED] * failures
            + [RunStatus.RUNNING] * (rest[0] if rest else 0)
        )
        for row, status in enumerate(statuses, start=1):
            runs.append(
                Run(
                    workflow=workflow,
                    batch=batch,
                    batch_row=row,
                    prompt_mode="pinned",
                    prompt_version=version,
                    submission=Submission.ACCEPTED,
                    status=status,
                )
            )
    Run.objects.bulk_create(runs)
    return batch


def test_no_batch_no_move_and_the_message_says_what_is_missing(
    workflow, versions, production, release_manager
):
    v1, v2 = versions
    with pytest.raises(PromotionRefused) as refused:
        prompt_label_move(workflow=workflow, name="production", version=v2, user=release_manager)
    assert "No finished batch has runs of v2" in str(refused.value)
    assert "20 finished runs" in str(refused.value)
    assert PromptLabel.objects.get(pk=production.pk).version == v1
    assert not PromptLabelMove.objects.exists()


def test_too_few_runs_says_how_many_there_are_and_how_many_are_needed(
    workflow, versions, production, release_manager
):
    v1, v2 = versions
    make_batch(workflow, {v1: (10, 0), v2: (12, 0)})
    expected = "v2 has 12 finished runs in Batch .*needs at least 20"
    with pytest.raises(PromotionRefused, match=expected):
        prompt_label_move(workflow=workflow, name="production", version=v2, user=release_manager)


def test_a_finished_batch_with_enough_runs_not_worse_moves_it_and_records_the_evidence(
    workflow, versions, production, release_manager
):
    v1, v2 = versions
    batch = make_batch(workflow, {v1: (17, 3), v2: (18, 2)})
    prompt_label_move(
        workflow=workflow, name="production", version=v2, user=release_manager, reason="better"
    )
    assert PromptLabel.objects.get(pk=production.pk).version == v2
    move = PromptLabelMove.objects.get()
    assert (move.from_version, move.to_version, move.moved_by) == (v1, v2, release_manager)
    assert move.evidence_batch == batch and not move.without_evidence
    assert move.evidence["candidate"] == {
        "version": 2,
        "source": str(batch),
        "succeeded": 18,
        "finished": 20,
    }
    assert move.evidence["current"]["succeeded"] == 17
    assert move.evidence["p_value"] > 0.05


def test_a_significantly_worse_candidate_is_refused_with_the_test(
    workflow, versions, production, release_manager
):
    v1, v2 = versions
    make_batch(workflow, {v1: (19, 1), v2: (10, 10)})
    with pytest.raises(PromotionRefused) as refused:
        prompt_label_move(workflow=workflow, name="production", version=v2, user=release_manager)
    message = str(refused.value)
    assert "significantly worse than v1" in message and "one-sided Fisher" in message
    evidence = refused.value.evidence
    # Known value: one-sided Fisher for [[10, 10], [19, 1]] = P(X ≤ 10), X hypergeometric
    # (40 runs, 29 successes, 20 drawn) = 0.0016710 (exact sum of the two tables 9 and 10).
    assert evidence.p_value == pytest.approx(0.0016710, abs=1e-7)


def test_worse_but_not_significantly_is_allowed(workflow, versions, production, release_manager):
    v1, v2 = versions
    make_batch(workflow, {v1: (18, 2), v2: (16, 4)})
    prompt_label_move(workflow=workflow, name="production", version=v2, user=release_manager)
    assert PromptLabel.objects.get(pk=production.pk).version == v2


def test_unfinished_and_cancelled_batches_and_cancelled_runs_are_not_evidence(
    workflow, versions, production, release_manager
):
    v1, v2 = versions
    make_batch(workflow, {v2: (20, 0, 1)})  # one run still running
    make_batch(workflow, {v2: (20, 0)}, state=Batch.State.CANCELLED)
    make_batch(workflow, {v2: (20, 0)}, state=Batch.State.SUBMITTING)
    batch = make_batch(workflow, {v2: (19, 0)})
    Run.objects.filter(batch=batch).first()
    Run.objects.create(
        workflow=workflow,
        batch=batch,
        prompt_mode="pinned",
        prompt_version=v2,
        submission=Submission.ACCEPTED,
        status=RunStatus.CANCELLED,
    )
    with pytest.raises(PromotionRefused, match="v2 has 19 finished runs"):
        prompt_label_move(workflow=workflow, name="production", version=v2, user=release_manager)
    assert promotion_batches(workflow=workflow, version=v2) == [batch]


def test_when_the_current_version_is_not_in_the_batch_its_last_runs_compare(
    workflow, versions, production, release_manager, settings
):
    v1, v2 = versions
    settings.PROMOTION_MIN_RUNS = 10
    # v1's history: 30 old failures, then its last 10 runs all succeeded.
    old = make_batch(workflow, {v1: (0, 30)})
    recent = make_batch(workflow, {v1: (10, 0)})
    assert old.pk < recent.pk
    batch = make_batch(workflow, {v2: (4, 6)})
    evidence = promotion_evidence(
        workflow=workflow, label="production", candidate=v2, current=v1, batch=batch
    )
    assert evidence.current_cell.source == "last 10 runs"
    assert (evidence.current_cell.succeeded, evidence.current_cell.finished) == (10, 10)
    assert not evidence.ok and "significantly worse" in evidence.message


def test_promotion_min_runs_comes_from_settings(
    workflow, versions, production, release_manager, settings
):
    v1, v2 = versions
    settings.PROMOTION_MIN_RUNS = 5
    make_batch(workflow, {v1: (5, 0), v2: (5, 0)})
    prompt_label_move(workflow=workflow, name="production", version=v2, user=release_manager)
    assert PromptLabel.objects.get(pk=production.pk).version == v2


def test_an_override_needs_the_permission_and_a_reason(
    workflow, versions, production, release_manager, overrider
):
    v1, v2 = versions
    with pytest.raises(PromotionRefused, match="needs the “may promote without evidence”"):
        prompt_label_move(
            workflow=workflow,
            name="production",
            version=v2,
            user=release_manager,
            reason="hotfix",
            without_evidence=True,
        )
    with pytest.raises(PromotionRefused, match="Write why"):
        prompt_label_move(
            workflow=workflow, name="production", version=v2, user=overrider, without_evidence=True
        )
    prompt_label_move(
        workflow=workflow,
        name="production",
        version=v2,
        user=overrider,
        reason="hotfix for the outage",
        without_evidence=True,
    )
    move = PromptLabelMove.objects.get()
    assert move.without_evidence and move.reason == "hotfix for the outage"
    assert move.moved_by == overrider and move.evidence["problems"]


def test_moving_production_still_needs_its_own_permission(
    workflow, versions, production, prompt_editor
):
    with pytest.raises(PermissionDenied):
        prompt_label_move(
            workflow=workflow, name="production", version=versions[1], user=prompt_editor
        )


def test_production_is_created_protected_and_other_labels_are_not(
    workflow, versions, overrider, prompt_editor
):
    v1, _ = versions
    prompt_label_move(
        workflow=workflow,
        name="production",
        version=v1,
        user=overrider,
        reason="first version",
        without_evidence=True,
    )
    staging = prompt_label_move(workflow=workflow, name="staging", version=v1, user=prompt_editor)
    assert PromptLabel.objects.get(name="production").protected
    assert not staging.protected


def test_a_protected_label_other_than_production_is_gated_too(
    workflow, versions, prompt_editor, release_manager, overrider
):
    v1, v2 = versions
    staging = prompt_label_move(workflow=workflow, name="staging", version=v1, user=prompt_editor)
    with pytest.raises(PermissionDenied):
        prompt_label_set_protected(label=staging, protected=True, user=prompt_editor)
    prompt_label_set_protected(label=staging, protected=True, user=release_manager)
    with pytest.raises(PermissionDenied):
        prompt_label_move(workflow=workflow, name="staging", version=v2, user=prompt_editor)
    with pytest.raises(PromotionRefused):
        prompt_label_move(workflow=workflow, name="staging", version=v2, user=release_manager)
    # Lifting protection is an override of its own.
    with pytest.raises(PermissionDenied):
        prompt_label_set_protected(label=staging, protected=False, user=release_manager)
    prompt_label_set_protected(label=staging, protected=False, user=overrider)
    assert not PromptLabel.objects.get(pk=staging.pk).protected


def test_a_batch_of_another_workflow_is_not_evidence(
    workflow, versions, production, release_manager
):
    v1, v2 = versions
    other = Workflow.objects.create(id=uuid.uuid4(), name="Other")
    foreign = make_batch(other, {})
    with pytest.raises(PromotionRefused, match="is not a finished batch of Eligibility"):
        prompt_label_move(
            workflow=workflow,
            name="production",
            version=v2,
            user=release_manager,
            evidence_batch=foreign,
        )


def test_the_newest_batch_with_enough_runs_is_picked_not_one_with_many_other_runs(
    workflow, versions, production, release_manager
):
    v1, v2 = versions
    enough = make_batch(workflow, {v1: (18, 2), v2: (19, 1)})
    # Newer, with many runs of v1 but only 3 of v2: not enough, so not picked.
    make_batch(workflow, {v1: (60, 0), v2: (3, 0)})
    evidence = promotion_evidence(workflow=workflow, label="production", candidate=v2, current=v1)
    assert evidence.batch == enough and evidence.ok
    assert (evidence.candidate_cell.succeeded, evidence.candidate_cell.finished) == (19, 20)
