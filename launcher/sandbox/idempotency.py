"""`Idempotency-Key` on writes (spec §4), following the IETF draft "The Idempotency-Key HTTP
Header Field" where Cyberdesk's behaviour is unconfirmed:

- same key, same request → the first response again (status and body), marked with
  `Idempotency-Status: replayed`;
- same key while the first request is still executing → 409 with
  `Idempotency-Status: in_progress` (the one value the SDK knows; it retries on it);
- same key, different request → 422 (the draft's answer), in the list shape every 422 has;
- keys are kept SANDBOX_IDEMPOTENCY_TTL_HOURS (default 24) and then forgotten.

A 5xx is not remembered, so a retry after a crash runs again.
"""

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from launcher.sandbox.errors import ApiError, ValidationFailed, validation_item
from launcher.sandbox.models import IdempotencyRecord
from launcher.sandbox.parsing import JsonRefused, json_load

HEADER = "Idempotency-Key"
STATUS_HEADER = "Idempotency-Status"
# A request "in progress" for longer than this is presumed dead; a retry may take over.
ABANDONED_AFTER = timedelta(seconds=60)


def key_lifetime() -> timedelta:
    return timedelta(hours=float(getattr(settings, "SANDBOX_IDEMPOTENCY_TTL_HOURS", 24)))


def request_fingerprint(request: HttpRequest) -> str:
    """HMAC (keyed with SECRET_KEY) of method, path and body: a plain hash of a body holding a
    short sensitive value could be brute-forced, a keyed one cannot."""
    try:
        body = json.dumps(json_load(request.body or b"null"), sort_keys=True)
    except JsonRefused:
        body = request.body.hex()
    message = f"{request.method}\n{request.path}\n{body}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def idempotent_call(request: HttpRequest, handler: Callable[[], HttpResponse]) -> HttpResponse:
    key = request.headers.get(HEADER)
    if not key:
        return handler()
    if len(key) > 255:
        raise ValidationFailed(
            [
                validation_item(
                    ("header", HEADER),
                    "String should have at most 255 characters",
                    "string_too_long",
                    ctx={"max_length": 255},
                )
            ]
        )
    fingerprint = request_fingerprint(request)
    record = _claim(key, fingerprint)
    if record is not None:
        return _answer_from(record, fingerprint)
    try:
        response = handler()
    except BaseException:
        IdempotencyRecord.objects.filter(key=key).delete()
        raise
    if response.status_code >= 500:
        IdempotencyRecord.objects.filter(key=key).delete()
    else:
        IdempotencyRecord.objects.filter(key=key).update(
            in_progress=False,
            response_status=response.status_code,
            response_body=response.content.decode(),
        )
    return response


def _claim(key: str, fingerprint: str) -> IdempotencyRecord | None:
    """Record the key as in progress. Returns the existing record when the key was seen."""
    now = timezone.now()
    IdempotencyRecord.objects.filter(key=key, created_at__lt=now - key_lifetime()).delete()
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(key=key, request_fingerprint=fingerprint)
        return None
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.filter(key=key).first()
    if record is None:  # expired and deleted by someone else in between: claim again
        return _claim(key, fingerprint)
    if (
        record.in_progress
        and record.request_fingerprint == fingerprint
        and record.created_at < now - ABANDONED_AFTER
    ):
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, in_progress=True, created_at=record.created_at
        ).update(created_at=now)
        if taken:
            return None
    return record


def _answer_from(record: IdempotencyRecord, fingerprint: str) -> HttpResponse:
    if record.request_fingerprint != fingerprint:
        raise ValidationFailed(
            [
                validation_item(
                    ("header", HEADER),
                    "This Idempotency-Key was already used with a different request; "
                    "use a new key for a new request",
                    "idempotency_key_reused",
                )
            ]
        )
    if record.in_progress:
        raise ApiError(
            409,
            "A request with this Idempotency-Key is still being processed; retry shortly",
            headers={STATUS_HEADER: "in_progress", "Retry-After": "1"},
        )
    response = HttpResponse(
        record.response_body, status=record.response_status, content_type="application/json"
    )
    response[STATUS_HEADER] = "replayed"
    return response


def idempotency_records_purge() -> int:
    cutoff = timezone.now() - key_lifetime()
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
