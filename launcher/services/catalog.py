"""The model catalog: a local copy of the API's model configurations, and which of them staff
offer to operators.

Synced by `manage.py sync_models`, by the "Sync now" button, and automatically when the table is
empty or older than MODEL_CATALOG_MAX_AGE_SECONDS. New computer-use models arrive enabled; the
others arrive disabled (they can never be offered as the main agent anyway).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from launcher.cyberdesk import errors, get_client, quick_reads
from launcher.models import ModelOption, ModelOptionChange
from launcher.services.api_status import api_outage, api_outage_note

logger = logging.getLogger(__name__)


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.created)} new, {len(self.updated)} updated, "
            f"{len(self.gone)} no longer listed upstream"
        )


def models_sync() -> SyncResult:
    """Upsert every upstream model configuration. API errors propagate (nothing changes)."""

    upstream = get_client().list_model_configurations()
    now = timezone.now()
    result = SyncResult()
    with transaction.atomic():
        existing = {option.pk: option for option in ModelOption.objects.select_for_update()}
        for config in upstream:
            values = {
                "name": config.name or str(config.id),
                "provider": config.provider or "",
                "model": config.model or "",
                "description": config.description or "",
                "is_computer_use": bool(config.is_computer_use_model),
                "is_archived_upstream": bool(config.is_archived),
                "is_system_default": bool(config.is_system_default),
                "present_upstream": True,
                "synced_at": now,
            }
            option = existing.pop(config.id, None)
            if option is None:
                ModelOption.objects.create(
                    id=config.id, enabled=values["is_computer_use"], **values
                )
                result.created.append(values["name"])
                continue
            changed = [name for name, value in values.items() if getattr(option, name) != value]
            for name in changed:
                setattr(option, name, values[name])
            option.save(update_fields=changed)
            if set(changed) - {"synced_at"}:
                result.updated.append(option.name)
        # Rows the API no longer lists stay (runs point at them) but are never offered again.
        for option in existing.values():
            if option.present_upstream:
                result.gone.append(option.name)
        ModelOption.objects.filter(pk__in=existing).update(present_upstream=False, synced_at=now)
    logger.info("model catalog synced: %s", result)
    return result


def models_last_synced_at():
    return ModelOption.objects.aggregate(last=Max("synced_at"))["last"]


def models_are_stale() -> bool:
    last = models_last_synced_at()
    max_age = timedelta(seconds=settings.MODEL_CATALOG_MAX_AGE_SECONDS)
    return last is None or timezone.now() - last >= max_age


def models_sync_if_stale() -> SyncResult | None:
    """Sync when the catalog is empty or older than MODEL_CATALOG_MAX_AGE_SECONDS.

    Returns the result, or None when it was fresh or the API failed (logged; the last catalog
    stays in use).
    """

    if not models_are_stale():
        return None
    # Pages call this: never waiting on an API known to be down (services/api_status.py).
    if api_outage() is not None:
        return None
    try:
        with quick_reads():
            return models_sync()
    except errors.CyberdeskError as exc:
        logger.warning("model catalog sync failed; keeping the last catalog: %s", exc)
        api_outage_note(exc)
        return None


def model_set_enabled(*, model_option: ModelOption, enabled: bool, user) -> ModelOption:
    """Offer (or stop offering) a model to operators; every change records who and when."""
    with transaction.atomic():
        option = ModelOption.objects.select_for_update().get(pk=model_option.pk)
        if option.enabled != enabled:
            option.enabled = enabled
            option.save(update_fields=["enabled"])
            ModelOptionChange.objects.create(model_option=option, enabled=enabled, changed_by=user)
    return option


def model_set_prices(
    *,
    model_option: ModelOption,
    input_per_million: Decimal | None,
    output_per_million: Decimal | None,
) -> ModelOption:
    """Staff's own price per million input/output tokens (None clears it)."""
    model_option.price_input_per_million = input_per_million
    model_option.price_output_per_million = output_per_million
    model_option.save(update_fields=["price_input_per_million", "price_output_per_million"])
    return model_option
