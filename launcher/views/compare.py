"""`/runs/compare/?a=<run>[.<attempt>]&b=<run>[.<attempt>]` — two runs or attempts side by side.

Without both references (or with one that names nothing) the page shows its small form again,
status 200, with the message next to the field: a bad reference is never a 500 nor a 404.
Permission: `launcher.launch_run`, as for the run pages.
"""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from launcher.evidence.compare import (
    CompareRefInvalid,
    CompareSide,
    compare_build,
    compare_ref_parse,
    compare_sides,
)
from launcher.permissions import LAUNCH_RUN, permission_required
from launcher.selectors import prompt_diff

PAGE = "launcher/run_compare.html"


@require_GET
@permission_required(LAUNCH_RUN)
def run_compare(request):
    values = {name: request.GET.get(name, "").strip()[:40] for name in ("a", "b")}
    refs, field_errors = {}, {}
    for name, value in values.items():
        if not value:
            if "a" in request.GET or "b" in request.GET:
                field_errors[name] = "Enter a run to compare."
            continue
        try:
            refs[name] = compare_ref_parse(value)
        except CompareRefInvalid as exc:
            field_errors[name] = str(exc)
    comparison = None
    diff = None
    if refs:
        sides = compare_sides(list(refs.values()))
        for name, ref in refs.items():
            if not isinstance(sides[ref], CompareSide):
                field_errors[name] = sides[ref]
        if len(refs) == 2 and not field_errors:
            comparison = compare_build(sides[refs["a"]], sides[refs["b"]])
            if not comparison.same_prompt:
                diff = prompt_diff(comparison.a.prompt_text, comparison.b.prompt_text)
    context = {
        "nav": "runs",
        "values": values,
        "field_errors": field_errors,
        "comparison": comparison,
        "prompt_diff": diff,
    }
    return render(request, PAGE, context)
