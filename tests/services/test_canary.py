"""Canaries: deterministic routing by idempotency key (single launches and batch rows), the
arm recorded on each run, the alpha-spending evaluation that stops a worse candidate by itself,
and the ways a canary ends."""

import json
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from launcher.models import Canary, PromptLabel, Run, RunStatus, Submission
from launcher.services.batches.plan import batch_create
from launcher.services.batches.rows import BatchRow
from launcher.services.canary import (
    CANDIDATE,
    CONTROL,
    CanaryInvalid,
    canaries_evaluate,
    canary_arm_for,
    canary_look_runs,
    canary_promote,
    canary_start,
    canary_stop,
)
from launcher.services.prompts import (
    PromotionRefused,
    prompt_label_move,
    prompt_resolve_choice,
)
from launcher.services.runs import run_launch
from tests.fake_cyberdesk import serve
from tests.launch_api import V1_TEXT, V2_TEXT

pytestmark = pytest.mark.django_db


@pytest.fixture
def release_manager(django_user_model):
    user = django_user_model.objects.create_user("ana", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="launcher", codename="move_production_label")
    )
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def canary(catalog, release_manager):
    assert catalog.production.protected  # production is protected however it is created
    return canary_start(
        label=catalog.production, candidate=catalog.v2, share_percent=20, user=release_manager
    )


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


# --- Routing ------------------------------------------------------------------------------------


def test_the_arm_is_a_pure_function_of_the_key():
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert {canary_arm_for(key, 30) for _ in range(5)} == {canary_arm_for(key, 30)}
    assert canary_arm_for(key, 30) == canary_arm_for(str(key), 30)


@pytest.mark.parametrize("share", [1, 10, 25, 50])
def test_routing_shares_are_within_tolerance_over_many_runs(share):
    keys = [uuid.uuid5(uuid.NAMESPACE_URL, f"run-{n}") for n in range(20000)]
    candidates = sum(1 for key in keys if canary_arm_for(key, share) == CANDIDATE)
    observed = candidates / len(keys)
    # Binomial standard deviation at n = 20 000 is at most 0.35 points: 4 of them is 1.4.
    assert abs(observed - share / 100) < 0.014, observed


def test_a_larger_share_only_adds_runs_to_the_candidate():
    keys = [uuid.uuid5(uuid.NAMESPACE_URL, f"k-{n}") for n in range(2000)]
    at_10 = {key for key in keys if canary_arm_for(key, 10) == CANDIDATE}
    at_30 = {key for key in keys if canary_arm_for(key, 30) == CANDIDATE}
    assert at_10 < at_30


def test_a_single_launch_of_the_label_takes_its_arm_and_sends_that_text(
    catalog, canary, api, operator
):
    sent = {}
    for n in range(60):
        key = uuid.uuid5(uuid.NAMESPACE_URL, f"launch-{n}")
        run = run_launch(
            user=operator,
            workflow=catalog.workflow,
            model_option=None,
            prompt_choice="label:production",
            input_values={"customer_id": "c-1", "age": 40},
            idempotency_key=key,
        )
        expected = canary_arm_for(key, 20)
        assert (run.canary_id, run.canary_arm) == (canary.pk, expected)
        assert run.prompt_label == "production"
        assert run.prompt_version == (catalog.v2 if expected == CANDIDATE else catalog.v1)
        sent[run.canary_arm] = json.loads(api.creates[-1].content)["main_prompt"]
    assert sent == {CANDIDATE: V2_TEXT, CONTROL: V1_TEXT}


def test_choices_other_than_the_label_and_previews_are_not_routed(catalog, canary):
    key = next(
        uuid.uuid5(uuid.NAMESPACE_URL, f"c-{n}")
        for n in range(100)
        if canary_arm_for(uuid.uuid5(uuid.NAMESPACE_URL, f"c-{n}"), 20) == CANDIDATE
    )
    from launcher.services.prompts import prompt_resolve

    pinned = prompt_resolve(
        workflow=catalog.workflow, mode="pinned", version_id=catalog.v1.pk, routing_key=key
    )
    assert pinned.version == catalog.v1 and pinned.canary_id is None
    preview = prompt_resolve_choice(workflow=catalog.workflow, choice="label:production")
    assert preview.version == catalog.v1 and preview.canary_arm == ""
    routed = prompt_resolve(
        workflow=catalog.workflow, mode="label", label="production", routing_key=key
    )
    assert routed.version == catalog.v2 and routed.canary_arm == CANDIDATE


def test_batch_rows_take_part_each_by_its_own_key(catalog, canary, operator):
    prompt = prompt_resolve_choice(workflow=catalog.workflow, choice="label:production")
    rows = [BatchRow(number=n, line=n + 1, values={"customer_id": f"c-{n}"}) for n in range(100)]
    batch = batch_create(
        user=operator,
        workflow=catalog.workflow,
        models=[None],
        prompts=[prompt],
        rows=rows,
        token=uuid.uuid4(),
    )
    runs = list(Run.objects.filter(batch=batch))
    assert len(runs) == 100
    for run in runs:
        arm = canary_arm_for(run.idempotency_key, 20)
        assert run.canary_arm == arm and run.canary_id == canary.pk
        assert run.prompt_version_id == (catalog.v2.pk if arm == CANDIDATE else catalog.v1.pk)
    assert 5 < sum(1 for run in runs if run.canary_arm == CANDIDATE) < 40


# --- Starting and ending ------------------------------------------------------------------------


def test_a_canary_needs_a_protected_label_a_share_and_the_permission(
    catalog, release_manager, prompt_editor
):
    with pytest.raises(PermissionDenied):
        canary_start(
            label=catalog.production, candidate=catalog.v2, share_percent=10, user=prompt_editor
        )
    for share in (0, 51, 100):
        with pytest.raises(CanaryInvalid, match="1 to 50"):
            canary_start(
                label=catalog.production,
                candidate=catalog.v2,
                share_percent=share,
                user=release_manager,
            )
    with pytest.raises(CanaryInvalid, match="already points"):
        canary_start(
            label=catalog.production, candidate=catalog.v1, share_percent=10, user=release_manager
        )
    staging = PromptLabel.objects.create(
        workflow=catalog.workflow, name="staging", version=catalog.v1
    )
    with pytest.raises(CanaryInvalid, match="not protected"):
        canary_start(label=staging, candidate=catalog.v2, share_percent=10, user=release_manager)


def test_one_running_canary_per_label(catalog, canary, release_manager):
    v3 = catalog.workflow.prompt_versions.create(number=3, text="three")
    with pytest.raises(CanaryInvalid, match="already runs a canary"):
        canary_start(label=catalog.production, candidate=v3, share_percent=5, user=release_manager)


def test_stopping_sends_every_launch_to_the_label_again(catalog, canary, release_manager):
    canary_stop(canary=canary, user=release_manager)
    assert canary.state == Canary.State.STOPPED and "Stopped by ana" in canary.end_reason
    for n in range(30):
        resolved = prompt_resolve_choice(workflow=catalog.workflow, choice="label:production")
        from launcher.services.canary import canary_route

        routed = canary_route(resolved, routing_key=uuid.uuid5(uuid.NAMESPACE_URL, str(n)))
        assert routed.version == catalog.v1 and routed.canary_id is None
    with pytest.raises(CanaryInvalid):
        canary_stop(canary=canary, user=release_manager)


def test_promoting_the_candidate_needs_evidence_then_ends_the_canary(
    catalog, canary, release_manager, settings
):
    settings.PROMOTION_MIN_RUNS = 4
    with pytest.raises(PromotionRefused, match="v2 has 0 finished runs in Canary"):
        canary_promote(canary=canary, user=release_manager)
    _arm_runs(catalog, canary, CONTROL, successes=6, failures=0)
    _arm_runs(catalog, canary, CANDIDATE, successes=4, failures=0)
    canary_promote(canary=canary, user=release_manager, reason="canary held up")
    canary.refresh_from_db()
    assert canary.state == Canary.State.PROMOTED
    assert PromptLabel.objects.get(pk=catalog.production.pk).version == catalog.v2


def test_moving_the_label_elsewhere_stops_the_canary(catalog, canary, release_manager, settings):
    v3 = catalog.workflow.prompt_versions.create(number=3, text="three")
    release_manager.user_permissions.add(
        Permission.objects.get(codename="promote_without_evidence")
    )
    prompt_label_move(
        workflow=catalog.workflow,
        name="production",
        version=v3,
        user=release_manager.__class__.objects.get(pk=release_manager.pk),
        reason="rollback",
        without_evidence=True,
    )
    canary.refresh_from_db()
    assert canary.state == Canary.State.STOPPED and "moved to v3" in canary.end_reason


# --- Evaluation ---------------------------------------------------------------------------------


def _arm_runs(catalog, canary, arm, *, successes, failures):
    version = catalog.v2 if arm == CANDIDATE else catalog.v1
    Run.objects.bulk_create(
        Run(
            workflow=catalog.workflow,
            prompt_mode="label",
            prompt_label="production",
            prompt_version=version,
            canary=canary,
            canary_arm=arm,
            submission=Submission.ACCEPTED,
            status=status,
        )
        for status in [RunStatus.SUCCESS] * successes + [RunStatus.ERROR] * failures
    )


def test_no_look_before_the_first_milestone(catalog, canary):
    _arm_runs(catalog, canary, CONTROL, successes=40, failures=0)
    _arm_runs(catalog, canary, CANDIDATE, successes=0, failures=canary_look_runs(1) - 1)
    assert canaries_evaluate() == []
    canary.refresh_from_db()
    assert canary.looks == [] and canary.state == Canary.State.RUNNING


def test_a_candidate_as_good_as_the_control_keeps_running_and_each_look_is_taken_once(
    catalog, canary
):
    _arm_runs(catalog, canary, CONTROL, successes=36, failures=4)
    _arm_runs(catalog, canary, CANDIDATE, successes=9, failures=1)
    assert canaries_evaluate() == []
    assert canaries_evaluate() == []  # the same milestone is not looked at twice
    canary.refresh_from_db()
    assert [look["look"] for look in canary.looks] == [1]
    assert canary.looks[0]["candidate"] == [9, 10] and canary.looks[0]["alpha"] == 0.025
    _arm_runs(catalog, canary, CANDIDATE, successes=10, failures=0)
    canaries_evaluate()
    canary.refresh_from_db()
    assert [look["alpha"] for look in canary.looks] == [0.025, 0.0125]
    assert canary.state == Canary.State.RUNNING


def test_a_significantly_worse_candidate_stops_by_itself_with_a_reason(catalog, canary):
    _arm_runs(catalog, canary, CONTROL, successes=38, failures=2)
    _arm_runs(catalog, canary, CANDIDATE, successes=3, failures=7)
    stopped = canaries_evaluate()
    assert [c.pk for c in stopped] == [canary.pk]
    canary.refresh_from_db()
    assert canary.state == Canary.State.STOPPED and canary.ended_at is not None
    assert "Stopped by itself at look 1" in canary.end_reason
    assert "3/10" in canary.end_reason and "38/40" in canary.end_reason
    assert canary.looks[0]["p_value"] < 0.025


def test_a_borderline_drop_is_not_stopped_at_a_late_look_that_an_uncorrected_test_would_stop(
    catalog, canary
):
    # Look 3 (40 candidate runs) tests at 0.05 / 8: a drop with p ≈ 0.02 is not enough.
    canary.looks = [{"look": 1}, {"look": 2}]
    canary.save(update_fields=["looks"])
    _arm_runs(catalog, canary, CONTROL, successes=36, failures=4)
    _arm_runs(catalog, canary, CANDIDATE, successes=29, failures=11)
    assert canaries_evaluate() == []
    canary.refresh_from_db()
    look = canary.looks[-1]
    assert look["look"] == 3 and 0.00625 < look["p_value"] < 0.05
