"""The failure matrix: what is retried, how long we wait, and which error the caller sees."""

import logging
from uuid import UUID

import httpx
import pytest

from launcher.cyberdesk import errors
from tests.cyberdesk import payloads
from tests.cyberdesk.conftest import API_KEY

RUN_UUID = UUID(payloads.RUN_ID)


def connect_error():
    return httpx.ConnectError("[Errno 111] Connection refused")


def ok_run():
    return httpx.Response(200, json=payloads.run())


# --- Reads ----------------------------------------------------------------------------------------


def test_a_read_survives_one_connect_error(client, api, slept):
    api.reply(connect_error(), ok_run())

    run = client.get_run(RUN_UUID)

    assert run.id == RUN_UUID
    assert len(api.requests) == 2
    assert slept.calls == [0.5]


def test_a_read_retries_500_twice_then_succeeds(client, api, slept):
    api.reply(httpx.Response(500), httpx.Response(500), ok_run())

    assert client.get_run(RUN_UUID).status == "success"
    assert len(api.requests) == 3
    assert slept.calls == [0.5, 1.0]  # doubling backoff (jitter pinned to its ceiling)


def test_a_read_gives_up_after_three_attempts_as_unavailable(client, api, slept):
    api.reply(httpx.Response(502), httpx.Response(503), httpx.Response(504))

    with pytest.raises(errors.Unavailable) as caught:
        client.get_run(RUN_UUID)

    assert len(api.requests) == 3
    assert caught.value.status_code == 504
    assert caught.value.safe_to_retry is True
    assert "unavailable" in str(caught.value)


def test_a_read_retries_a_timeout(client, api):
    api.reply(httpx.ReadTimeout("timed out"), ok_run())
    assert client.get_run(RUN_UUID).id == RUN_UUID
    assert len(api.requests) == 2


def test_backoff_is_jittered_and_capped(api, slept):
    from launcher.cyberdesk import CyberdeskClient

    client = CyberdeskClient(
        base_url="https://x.test",
        api_key="k",
        transport=httpx.MockTransport(api),
        sleep=slept,
        random=lambda: 0.0,
        max_attempts=6,
    )
    api.reply(*[httpx.Response(500)] * 6)
    with pytest.raises(errors.Unavailable):
        client.get_run(RUN_UUID)
    # Ceilings 0.5, 1, 2, 4, 5 (capped); random() == 0 gives half of each.
    assert slept.calls == [0.25, 0.5, 1.0, 2.0, 2.5]


def test_401_is_not_retried_and_names_the_key(client, api, slept):
    api.reply(httpx.Response(401, json={"detail": "Invalid API key"}))

    with pytest.raises(errors.AuthError) as caught:
        client.get_run(RUN_UUID)

    assert len(api.requests) == 1
    assert slept.calls == []
    assert "Invalid API key" in str(caught.value)
    assert "CYBERDESK_API_KEY" in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_403_is_an_auth_error_too(client, api):
    api.reply(httpx.Response(403, json={"detail": "Forbidden"}))
    with pytest.raises(errors.AuthError):
        client.list_model_configurations()


def test_404_is_not_found_with_the_apis_words(client, api):
    api.reply(httpx.Response(404, json={"detail": "Run not found"}))
    with pytest.raises(errors.NotFound, match="Run not found") as caught:
        client.get_run(RUN_UUID)
    assert len(api.requests) == 1
    assert (caught.value.method, caught.value.path) == ("GET", f"/v1/runs/{RUN_UUID}")


def test_a_malformed_id_never_reaches_the_api(client, api):
    with pytest.raises(errors.NotFound):
        client.get_run("../workflows")
    assert api.requests == []


def test_429_with_retry_after_waits_that_long_then_retries(client, api, slept):
    api.reply(httpx.Response(429, headers={"Retry-After": "1"}), ok_run())

    assert client.get_run(RUN_UUID).id == RUN_UUID
    assert slept.calls == [1.0]
    assert len(api.requests) == 2


def test_retry_after_as_an_http_date_is_understood(client, api, slept):
    api.reply(
        httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), ok_run()
    )
    client.get_run(RUN_UUID)
    assert slept.calls == [0.0]  # a date in the past: go now


def test_429_that_persists_becomes_rate_limited_with_the_wait(client, api):
    api.reply(*[httpx.Response(429, headers={"Retry-After": "2"})] * 3)
    with pytest.raises(errors.RateLimited) as caught:
        client.get_run(RUN_UUID)
    assert caught.value.retry_after == 2.0
    assert caught.value.safe_to_retry is True
    assert "2 s" in str(caught.value)


def test_a_retry_after_over_a_minute_is_not_waited_for(client, api, slept):
    api.reply(httpx.Response(429, headers={"Retry-After": "120"}))
    with pytest.raises(errors.RateLimited) as caught:
        client.get_run(RUN_UUID)
    assert slept.calls == []
    assert caught.value.retry_after == 120.0
    assert len(api.requests) == 1


def test_a_2xx_that_is_not_json_is_an_invalid_response(client, api):
    api.reply(httpx.Response(200, text="<html>proxy login</html>"))
    with pytest.raises(errors.InvalidResponse):
        client.get_run(RUN_UUID)


def test_a_run_without_a_status_is_a_clear_error_not_a_key_error(client, api):
    payload = payloads.run()
    del payload["status"]
    api.reply(httpx.Response(200, json=payload))
    with pytest.raises(errors.InvalidResponse, match="run without its 'status'"):
        client.get_run(RUN_UUID)


def test_an_unexpected_4xx_is_a_cyberdesk_error(client, api):
    api.reply(httpx.Response(418, text="teapot"))
    with pytest.raises(errors.CyberdeskError, match="418") as caught:
        client.get_run(RUN_UUID)
    assert type(caught.value) is errors.CyberdeskError
    assert len(api.requests) == 1


# --- Writes ---------------------------------------------------------------------------------------


def create(client):
    return client.create_run(idempotency_key="launch-1", workflow_id=payloads.WORKFLOW_ID)


def test_a_write_that_never_connected_is_retried_with_the_same_key(client, api):
    api.reply(connect_error(), httpx.Response(201, json=payloads.run(status="scheduling")))

    run = create(client)

    assert run.status == "scheduling"
    assert [r.headers["Idempotency-Key"] for r in api.requests] == ["launch-1", "launch-1"]


def test_a_write_that_never_connected_at_all_is_not_sent_and_safe_to_retry(client, api):
    api.reply(connect_error(), connect_error(), httpx.ConnectTimeout("connect timed out"))

    with pytest.raises(errors.NotSent) as caught:
        create(client)

    assert len(api.requests) == 3
    assert caught.value.safe_to_retry is True
    assert isinstance(caught.value, errors.Unavailable)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
    ],
)
def test_a_write_sent_without_an_answer_is_never_blindly_retried(client, api, slept, failure):
    api.reply(failure)

    with pytest.raises(errors.OutcomeUnknown) as caught:
        create(client)

    assert len(api.requests) == 1
    assert slept.calls == []
    assert caught.value.safe_to_retry is False
    assert "may or may not" in str(caught.value)


def test_a_write_answered_with_500_is_outcome_unknown_and_not_retried(client, api):
    api.reply(httpx.Response(500, json={"detail": "Internal Server Error"}))
    with pytest.raises(errors.OutcomeUnknown) as caught:
        create(client)
    assert len(api.requests) == 1
    assert caught.value.status_code == 500


def test_a_write_rate_limited_is_retried_with_the_same_key(client, api, slept):
    api.reply(
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.Response(201, json=payloads.run()),
    )
    create(client)
    assert slept.calls == [1.0]
    assert {r.headers["Idempotency-Key"] for r in api.requests} == {"launch-1"}


def test_a_write_still_in_progress_upstream_is_retried_with_the_same_key(client, api):
    api.reply(
        httpx.Response(409, headers={"Idempotency-Status": "in_progress"}),
        httpx.Response(201, json=payloads.run()),
    )
    assert create(client).id == RUN_UUID
    assert {r.headers["Idempotency-Key"] for r in api.requests} == {"launch-1"}


def test_a_write_in_progress_for_too_long_is_outcome_unknown(client, api):
    api.reply(*[httpx.Response(409, headers={"Idempotency-Status": "in_progress"})] * 3)
    with pytest.raises(errors.OutcomeUnknown):
        create(client)
    assert len(api.requests) == 3


def test_a_503_with_retry_after_on_a_write_is_retried_with_the_same_key(client, api, slept):
    api.reply(
        httpx.Response(503, headers={"Retry-After": "3"}),
        httpx.Response(201, json=payloads.run()),
    )
    create(client)
    assert slept.calls == [3.0]
    assert len(api.requests) == 2


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(503, headers={"Retry-After": "1"}),
        httpx.Response(409, headers={"Idempotency-Status": "in_progress"}),
    ],
)
def test_a_write_that_may_have_started_is_not_called_not_sent_when_a_retry_cannot_connect(
    client, api, slept, first
):
    api.reply(first, connect_error())
    with pytest.raises(errors.OutcomeUnknown) as caught:
        create(client)
    assert len(api.requests) == 2
    assert caught.value.safe_to_retry is False


def test_a_write_only_rate_limited_before_a_connect_error_is_still_not_sent(client, api, slept):
    api.reply(httpx.Response(429, headers={"Retry-After": "1"}), connect_error(), connect_error())
    with pytest.raises(errors.NotSent):
        create(client)


def test_a_plain_409_is_a_conflict(client, api):
    api.reply(httpx.Response(409, json={"detail": "Run is still running"}))
    with pytest.raises(errors.Conflict, match="Run is still running"):
        client.retry_run(RUN_UUID)
    assert len(api.requests) == 1


# --- Validation errors ----------------------------------------------------------------------------


def test_a_400_with_a_string_detail_gives_a_message_without_a_field(client, api):
    api.reply(httpx.Response(400, json={"detail": "Unknown model configuration id"}))

    with pytest.raises(errors.InvalidRequest) as caught:
        create(client)

    assert caught.value.messages == ["Unknown model configuration id"]
    assert caught.value.field_errors == {}
    assert str(caught.value) == "Cyberdesk rejected the request: Unknown model configuration id"
    assert caught.value.safe_to_retry is False


def test_a_422_list_maps_each_message_to_its_field_path(client, api):
    api.reply(
        httpx.Response(
            422,
            json={
                "detail": [
                    {
                        "loc": ["body", "input_values", "age"],
                        "msg": "Input should be a valid integer",
                        "type": "int_parsing",
                        "input": "forty",
                    },
                    {
                        "loc": ["body", "sensitive_input_values", "password"],
                        "msg": "String should have at least 8 characters",
                        "type": "string_too_short",
                        "input": "hunter2",
                        "ctx": {"min_length": 8},
                    },
                    {
                        "loc": ["body", "input_values", "age"],
                        "msg": "second problem",
                        "type": "x",
                    },
                    {"loc": ["body"], "msg": "Body is not valid", "type": "x"},
                    {"loc": ["query", "limit"], "msg": "too big", "type": "x"},
                ]
            },
        )
    )

    with pytest.raises(errors.InvalidRequest) as caught:
        create(client)

    assert caught.value.status_code == 422
    assert caught.value.field_errors == {
        "input_values.age": ["Input should be a valid integer", "second problem"],
        "sensitive_input_values.password": ["String should have at least 8 characters"],
        "query.limit": ["too big"],
    }
    assert caught.value.messages == ["Body is not valid"]
    assert "input_values.age: Input should be a valid integer" in str(caught.value)
    # The echoed `input` may be a secret: it never reaches the message.
    assert "hunter2" not in str(caught.value)


def test_a_422_with_an_object_detail_is_kept_as_a_message(client, api):
    api.reply(httpx.Response(422, json={"detail": {"message": "Inputs do not match the schema"}}))
    with pytest.raises(errors.InvalidRequest) as caught:
        create(client)
    assert caught.value.messages == ["Inputs do not match the schema"]


def test_a_400_that_is_not_json_still_reads(client, api):
    api.reply(httpx.Response(400, text="Bad Request"))
    with pytest.raises(errors.InvalidRequest) as caught:
        create(client)
    assert caught.value.messages == ["Bad Request"]


# --- Logging --------------------------------------------------------------------------------------


def test_each_attempt_is_one_log_line_without_key_prompt_or_secrets(client, api, caplog):
    caplog.set_level(logging.DEBUG, logger="launcher.cyberdesk")
    api.reply(connect_error(), httpx.Response(201, json=payloads.run()))

    client.create_run(
        idempotency_key="launch-log",
        workflow_id=payloads.WORKFLOW_ID,
        main_prompt="Secret business prompt",
        sensitive_input_values={"password": "hunter2-secret"},
        input_values={"portal": "p"},
    )

    records = [r for r in caplog.records if r.name == "launcher.cyberdesk"]
    assert len(records) == 2
    first, second = (r.getMessage() for r in records)
    assert first.startswith("cyberdesk POST /v1/runs -> ConnectError in ")
    assert first.endswith("(attempt 1/3)")
    assert second.startswith("cyberdesk POST /v1/runs -> 201 in ")
    assert second.endswith("(attempt 2/3)")
    assert records[1].levelno == logging.INFO
    for secret in (API_KEY, "hunter2-secret", "Secret business prompt", "launch-log"):
        assert secret not in caplog.text


def test_the_query_string_stays_out_of_the_log(client, api, caplog):
    caplog.set_level(logging.INFO, logger="launcher.cyberdesk")
    api.reply(httpx.Response(200, json=payloads.page([])))
    client.list_runs(search="patient Jane Doe")
    assert "Jane" not in caplog.text
    assert "GET /v1/runs -> 200" in caplog.text


def test_the_client_repr_hides_the_key(client):
    assert API_KEY not in repr(client)
