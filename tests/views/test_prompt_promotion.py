"""The prompts page's writes: "Promote to production" and label moves on evidence, the label
history with its evidence link, "Import stored prompt", starting and stopping canaries."""

import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import get_random_string

from launcher.models import (
    Canary,
    PromptLabel,
    PromptLabelMove,
    PromptVersion,
    Run,
    RunStatus,
    Submission,
    Workflow,
)
from launcher.services.prompts import prompt_label_move, prompt_version_create
from tests.cyberdesk.payloads import WORKFLOW_ID
from tests.fake_cyberdesk import serve
from tests.services.test_promotion import make_batch

pytestmark = pytest.mark.django_db


def _perms(*codenames):
    return Permission.objects.filter(content_type__app_label="launcher", codename__in=codenames)


@pytest.fixture
def workflow():
    return Workflow.objects.create(
        id=WORKFLOW_ID, name="Eligibility", main_prompt="two", synced_at=timezone.now()
    )


@pytest.fixture
def versions(workflow):
    v1 = prompt_version_create(workflow=workflow, text="one", note="first")
    v2 = prompt_version_create(workflow=workflow, text="two", note="second")
    return v1, v2


@pytest.fixture
def production(workflow, versions):
    return PromptLabel.objects.create(
        workflow=workflow, name="production", version=versions[0], protected=True
    )


@pytest.fixture
def ana(django_user_model):
    """A release manager: a prompt editor who may move production."""
    user = django_user_model.objects.create_user("ana", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"), Group.objects.get(name="Prompt editors"))
    user.user_permissions.add(*_perms("move_production_label"))
    return user


@pytest.fixture
def ana_client(ana):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ana)
    return with_csrf_cookie(client)


def with_csrf_cookie(client):
    # The cookie a page with a form would set; the forms post the same secret back.
    client.cookies["csrftoken"] = get_random_string(32)
    return client


def csrf(client) -> dict:
    return {"csrfmiddlewaretoken": client.cookies["csrftoken"].value}


def move_url(workflow, **params):
    url = reverse("prompt_label_move", args=[workflow.pk])
    return url + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def page(workflow):
    return reverse("prompt_workflow", args=[workflow.pk])


# --- The page -----------------------------------------------------------------------------------


def test_each_version_row_has_promote_runs_and_admin_links_and_the_stored_version(
    ana_client, workflow, versions, production
):
    v1, v2 = versions
    text = ana_client.get(page(workflow)).content.decode()
    # Every row has the button; v1 is production already, so its button is disabled.
    assert text.count(">Promote to production</button>") == 2
    assert text.count('disabled title="v1 is production already"') == 1
    assert f'name="version" value="{v2.pk}"' in text
    assert f"/runs/?workflow={workflow.pk}&amp;prompt={v2.pk}" in text
    assert reverse("admin:launcher_promptversion_change", args=[v1.pk]) in text
    # The workflow's stored prompt is "two": v2.
    assert 'stored (published) prompt is <a href="#v2">v2</a>' in text
    assert "Import stored prompt" in text


def test_operators_see_no_promote_or_import_buttons(operator_client, workflow, versions):
    text = operator_client.get(page(workflow)).content.decode()
    assert "Promote to production" not in text and "Import stored prompt" not in text


def test_the_promote_form_shows_the_evidence_before_anything_moves(
    ana_client, workflow, versions, production
):
    v1, v2 = versions
    batch = make_batch(workflow, {v1: (17, 3), v2: (19, 1)})
    response = ana_client.get(move_url(workflow, label="production", version=v2.pk))
    assert response.status_code == 200
    text = response.content.decode()
    assert f'href="{reverse("batch_detail", args=[batch.pk])}"' in text
    assert "19/20 = 95% (95% CI 76–99%)" in text and "17/20 = 85%" in text
    assert "One-sided Fisher exact test" in text and "not significantly worse" in text
    assert "Enough evidence" in text
    assert PromptLabel.objects.get(pk=production.pk).version == v1  # GET moves nothing


def test_promote_without_evidence_is_refused_with_what_is_missing(
    ana_client, workflow, versions, production
):
    v1, v2 = versions
    make_batch(workflow, {v2: (5, 0)})
    response = ana_client.post(
        reverse("prompt_label_move", args=[workflow.pk]),
        {"label": "production", "version": v2.pk, "reason": "looks good", **csrf(ana_client)},
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "v2 has 5 finished runs in Batch" in text and "needs at least 20" in text
    assert 'role="alert"' in text and "looks good" in text  # the reason is kept
    assert PromptLabel.objects.get(pk=production.pk).version == v1
    assert not PromptLabelMove.objects.exists()


def test_promote_with_evidence_moves_it_and_the_history_links_the_batch(
    ana_client, workflow, versions, production, ana
):
    v1, v2 = versions
    batch = make_batch(workflow, {v1: (18, 2), v2: (19, 1)})
    response = ana_client.post(
        reverse("prompt_label_move", args=[workflow.pk]),
        {
            "label": "production",
            "version": v2.pk,
            "evidence": f"batch:{batch.pk}",
            "reason": "fewer failures on dates",
            **csrf(ana_client),
        },
    )
    assert response.status_code == 302
    assert response["Location"].endswith("#label-history")
    assert PromptLabel.objects.get(pk=production.pk).version == v2
    text = ana_client.get(page(workflow)).content.decode()
    history = text[text.index('id="label-history"') :]
    assert "production: v1 → v2</strong>" in history and "by ana" in history
    assert "“fewer failures on dates”" in history
    assert re.search(
        rf'evidence: <a href="{reverse("batch_detail", args=[batch.pk])}">Batch {batch.pk}</a>',
        history,
    )


def test_an_override_needs_the_permission_and_a_reason_on_the_form(
    ana_client, ana, workflow, versions, production
):
    v1, v2 = versions
    url = reverse("prompt_label_move", args=[workflow.pk])
    # Without the permission there is no override checkbox, and posting it changes nothing.
    text = ana_client.get(move_url(workflow, label="production", version=v2.pk)).content.decode()
    assert "Promote without evidence" not in text
    ana.user_permissions.add(*_perms("promote_without_evidence"))
    text = ana_client.get(move_url(workflow, label="production", version=v2.pk)).content.decode()
    assert "Promote without evidence" in text
    data = {"label": "production", "version": v2.pk, "without_evidence": "on", **csrf(ana_client)}
    response = ana_client.post(url, data)
    assert response.status_code == 200
    assert "Write why it moves without evidence" in response.content.decode()
    response = ana_client.post(url, {**data, "reason": "customer hotfix"})
    assert response.status_code == 302
    move = PromptLabelMove.objects.get()
    assert move.without_evidence and move.reason == "customer hotfix"
    history = ana_client.get(page(workflow)).content.decode()
    assert "without evidence" in history


def test_an_override_says_its_batch_did_not_hold_enough_evidence(
    ana_client, workflow, versions, production, ana
):
    # The batch the form showed is kept with the move, but it did not carry the move: the
    # history must not read "evidence: Batch N" for it.
    v1, v2 = versions
    batch = make_batch(workflow, {v2: (3, 0)})
    ana.user_permissions.add(*_perms("promote_without_evidence"))
    ana = type(ana).objects.get(pk=ana.pk)  # permissions are cached on the instance
    prompt_label_move(
        workflow=workflow,
        name="production",
        version=v2,
        user=ana,
        reason="customer hotfix",
        evidence_batch=batch,
        without_evidence=True,
    )

    text = ana_client.get(page(workflow)).content.decode()
    history = text[text.index('id="label-history"') :]

    assert "evidence: <a" not in history
    assert re.search(
        rf'without evidence</span> \(not enough in <a href="'
        rf'{reverse("batch_detail", args=[batch.pk])}">Batch {batch.pk}</a>\)',
        history,
    )


def test_other_labels_move_without_evidence(ana_client, workflow, versions, ana):
    v1, v2 = versions
    prompt_label_move(workflow=workflow, name="staging", version=v1, user=ana)
    response = ana_client.post(
        reverse("prompt_label_move", args=[workflow.pk]),
        {"label": "staging", "version": v2.pk, **csrf(ana_client)},
    )
    assert response.status_code == 302
    assert PromptLabel.objects.get(name="staging").version == v2


def test_who_may_move_labels(
    operator_client, prompt_editor_client, outsider_client, workflow, versions, production
):
    v2 = versions[1]
    for client in (operator_client, outsider_client):
        assert client.get(move_url(workflow, label="staging", version=v2.pk)).status_code == 403
    # A prompt editor moves labels, but not production.
    assert (
        prompt_editor_client.get(move_url(workflow, label="production", version=v2.pk)).status_code
        == 403
    )
    assert (
        prompt_editor_client.get(move_url(workflow, label="staging", version=v2.pk)).status_code
        == 200
    )


def test_a_post_without_csrf_is_refused(ana_client, workflow, versions, production):
    response = ana_client.post(
        reverse("prompt_label_move", args=[workflow.pk]),
        {"label": "production", "version": versions[1].pk},
    )
    assert response.status_code == 403


@pytest.mark.parametrize("version", ["", "x", "99999", "²", "1" * 30, "1" * 5000, "-1"])
def test_a_bad_version_is_a_404_not_a_500(ana_client, workflow, versions, version):
    assert (
        ana_client.get(move_url(workflow, label="production", version=version)).status_code == 404
    )


def test_the_promote_form_query_count_does_not_grow_with_batches_or_runs(
    ana_client, workflow, versions, production, django_assert_num_queries
):
    v1, v2 = versions
    for _ in range(3):
        make_batch(workflow, {v1: (10, 2), v2: (12, 1)})

    url = move_url(workflow, label="production", version=v2.pk)
    # session, user, perms, workflow, version, label, the batches offered, canaries, the
    # batch picked (none with enough runs, then the newest), its counts: pinned, and the same
    # with three times the history.
    with django_assert_num_queries(11):
        ana_client.get(url)
    for _ in range(6):
        make_batch(workflow, {v1: (10, 2), v2: (12, 1)})
    with django_assert_num_queries(11):
        ana_client.get(url)


def test_the_page_query_count_does_not_grow_with_moves_or_canaries(
    ana_client, ana, workflow, versions, production, django_assert_num_queries
):
    v1, v2 = versions
    # 11: the prompts page's pinned count (tests/views/test_prompts.py; 10 before the medians'
    # duration buckets were read).
    with django_assert_num_queries(11):
        ana_client.get(page(workflow))
    for index in range(3):
        version = prompt_version_create(workflow=workflow, text=f"v{index}")
        prompt_label_move(workflow=workflow, name="staging", version=version, user=ana)
        canary = Canary.objects.create(
            label=production,
            control_version=v1,
            candidate_version=version,
            share_percent=10,
            state=Canary.State.STOPPED,
        )
        Run.objects.create(
            workflow=workflow,
            prompt_mode="label",
            prompt_label="production",
            prompt_version=version,
            canary=canary,
            canary_arm="candidate",
            status=RunStatus.SUCCESS,
        )
    # + one query for the canaries' arms, whatever their number.
    with django_assert_num_queries(12):
        response = ana_client.get(page(workflow))
    assert response.content.decode().count('class="card canary-card"') == 3


# --- Import stored prompt -----------------------------------------------------------------------


def test_import_stored_prompt_saves_a_version(ana_client, workflow, settings):
    with serve(settings) as api:
        api.add_workflow(main_prompt="Fresh from the API")
        response = ana_client.post(reverse("prompt_import", args=[workflow.pk]), csrf(ana_client))
    assert response.status_code == 302
    version = PromptVersion.objects.get(workflow=workflow)
    assert version.text == "Fresh from the API" and version.number == 1


def test_the_empty_state_has_the_import_button(ana_client, workflow):
    text = ana_client.get(page(workflow)).content.decode()
    assert "No versions yet." in text
    empty = text[text.index('class="empty"') :]
    assert "Import stored prompt</button>" in empty[: empty.index("</div>")]


def test_import_needs_the_permission(operator_client, workflow):
    client = with_csrf_cookie(operator_client)
    response = client.post(reverse("prompt_import", args=[workflow.pk]), csrf(client))
    assert response.status_code == 403


# --- Canaries -----------------------------------------------------------------------------------


def test_a_canary_starts_shows_both_arms_and_stops(ana_client, workflow, versions, production):
    v1, v2 = versions
    url = reverse("canary_start", args=[workflow.pk])
    response = ana_client.post(
        url, {"label": "production", "candidate": v2.pk, "share_percent": "80", **csrf(ana_client)}
    )
    assert response.status_code == 200  # 80 % is refused, the form comes back
    text = response.content.decode()
    assert "Ensure this value is less than or equal to 50." in text and 'value="80"' in text
    assert not Canary.objects.exists()
    response = ana_client.post(
        url, {"label": "production", "candidate": v2.pk, "share_percent": "20", **csrf(ana_client)}
    )
    assert response.status_code == 302
    canary = Canary.objects.get()
    assert (canary.candidate_version, canary.control_version, canary.share_percent) == (v2, v1, 20)
    for arm, version, status in [
        ("control", v1, RunStatus.SUCCESS),
        ("control", v1, RunStatus.TASK_FAILED),
        ("candidate", v2, RunStatus.SUCCESS),
    ]:
        Run.objects.create(
            workflow=workflow,
            prompt_mode="label",
            prompt_label="production",
            prompt_version=version,
            canary=canary,
            canary_arm=arm,
            status=status,
            submission=Submission.ACCEPTED,
        )
    text = ana_client.get(page(workflow)).content.decode()
    section = text[text.index('id="canary"') :]
    assert '50% <span class="muted">(1/2; 95% CI 9–91%)' in section
    assert '100% <span class="muted">(1/1; 95% CI 21–100%)' in section
    assert "Promote v2 to production" in section
    response = ana_client.post(
        reverse("canary_stop", args=[workflow.pk, canary.pk]), csrf(ana_client)
    )
    assert response.status_code == 302
    canary.refresh_from_db()
    assert canary.state == Canary.State.STOPPED and canary.ended_at is not None
    assert "Stopped by ana" in canary.end_reason


def test_promoting_a_canary_uses_its_arms_as_evidence(
    ana_client, workflow, versions, production, settings
):
    v1, v2 = versions
    settings.PROMOTION_MIN_RUNS = 3
    canary = Canary.objects.create(
        label=production, control_version=v1, candidate_version=v2, share_percent=10
    )
    for arm, version in [("control", v1)] * 5 + [("candidate", v2)] * 3:
        Run.objects.create(
            workflow=workflow,
            prompt_mode="label",
            prompt_label="production",
            prompt_version=version,
            canary=canary,
            canary_arm=arm,
            status=RunStatus.SUCCESS,
        )
    response = ana_client.post(
        reverse("prompt_label_move", args=[workflow.pk]),
        {
            "label": "production",
            "version": v2.pk,
            "evidence": f"canary:{canary.pk}",
            **csrf(ana_client),
        },
    )
    assert response.status_code == 302
    canary.refresh_from_db()
    assert canary.state == Canary.State.PROMOTED
    move = PromptLabelMove.objects.get()
    assert move.evidence_canary == canary and move.evidence["candidate"]["finished"] == 3


@pytest.mark.parametrize("label", ["latest", "\x00", "%00", "!!!"])
def test_a_bad_label_is_a_404_not_a_500(ana_client, workflow, versions, label):
    response = ana_client.get(move_url(workflow, label=label, version=versions[1].pk))
    assert response.status_code == 404


def test_a_run_page_says_which_canary_arm_the_run_took(
    operator_client, workflow, versions, production
):
    v1, v2 = versions
    canary = Canary.objects.create(
        label=production, control_version=v1, candidate_version=v2, share_percent=10
    )
    run = Run.objects.create(
        workflow=workflow,
        prompt_mode="label",
        prompt_label="production",
        prompt_version=v2,
        canary=canary,
        canary_arm="candidate",
        status=RunStatus.SUCCESS,
        synced_at=timezone.now(),
    )
    text = operator_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "(via production, canary candidate arm)" in text
