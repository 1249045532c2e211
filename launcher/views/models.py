"""The model catalog page (staff only): which upstream models operators may use, and prices."""

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from launcher.cyberdesk import errors
from launcher.models import ModelOption
from launcher.permissions import staff_required
from launcher.selectors import model_catalog
from launcher.services.catalog import (
    model_set_enabled,
    model_set_prices,
    models_last_synced_at,
    models_sync,
    models_sync_if_stale,
)

PAGE = "launcher/model_list.html"


class ModelPricesForm(forms.Form):
    price_input_per_million = forms.DecimalField(
        label="Input price (USD per 1M tokens)",
        required=False,
        min_value=0,
        max_digits=10,
        decimal_places=4,
    )
    price_output_per_million = forms.DecimalField(
        label="Output price (USD per 1M tokens)",
        required=False,
        min_value=0,
        max_digits=10,
        decimal_places=4,
    )


def _row_context(option: ModelOption, prices_form: ModelPricesForm | None = None) -> dict:
    # A row rendered alone (htmx) needs the same runs_used annotation the page has.
    option = model_catalog().get(pk=option.pk)
    return {"option": option, "prices_form": prices_form, "form_for": option.pk}


@require_GET
@staff_required
def model_list(request):
    models_sync_if_stale()
    return render(
        request,
        PAGE,
        {"nav": "models", "options": model_catalog(), "last_synced_at": models_last_synced_at()},
    )


@require_POST
@staff_required
def model_sync(request):

    try:
        result = models_sync()
    except errors.CyberdeskError as exc:
        messages.error(request, f"Could not sync the models: {exc}. The last catalog is kept.")
    else:
        messages.success(request, f"Models synced: {result}.")
    return redirect("model_list")


@require_POST
@staff_required
def model_toggle(request, model_id):
    option = get_object_or_404(ModelOption, pk=model_id)
    # An explicit target state (not "flip") so a double click or a replay does no harm.
    enabled = request.POST.get("enabled") == "1"
    option = model_set_enabled(model_option=option, enabled=enabled, user=request.user)
    if request.htmx:
        return render(request, f"{PAGE}#model-row", _row_context(option))
    messages.success(request, f"{option.name} {'enabled' if enabled else 'disabled'}.")
    return redirect("model_list")


@require_POST
@staff_required
def model_prices(request, model_id):
    option = get_object_or_404(ModelOption, pk=model_id)
    form = ModelPricesForm(request.POST)
    if form.is_valid():
        option = model_set_prices(
            model_option=option,
            input_per_million=form.cleaned_data["price_input_per_million"],
            output_per_million=form.cleaned_data["price_output_per_million"],
        )
        if request.htmx:
            return render(request, f"{PAGE}#model-row", _row_context(option))
        messages.success(request, f"Prices of {option.name} saved.")
        return redirect("model_list")
    # Invalid: status 200 with the typed values and the errors next to the fields.
    if request.htmx:
        return render(request, f"{PAGE}#model-row", _row_context(option, form))
    return render(
        request,
        PAGE,
        {
            "nav": "models",
            "options": model_catalog(),
            "last_synced_at": models_last_synced_at(),
            "prices_form": form,
            "form_for": option.pk,
        },
    )
