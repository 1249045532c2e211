"""Confirmations of destructive actions (Cancel, Retry, Cancel selected, Retry selected, Cancel
the rest, Retry failed runs): what will happen, and to how many runs, before anything does.

Each action keeps its own POST URL, which acts at once (scripts and tests post there). The
button on a page leads to the action's confirmation instead:

- without JavaScript, a page (`confirm.html`) whose form posts to the action;
- with htmx, the same form as a fragment (`confirm.html#confirm-form`) swapped into base.html's
  `<dialog id="confirm-dialog">`, which app.js opens; its form posts with htmx to the action and
  swaps the page's region as the action's own button did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.shortcuts import render

PAGE = "launcher/confirm.html"


@dataclass(frozen=True)
class Confirmation:
    title: str  # "Cancel run 12?"
    consequences: list[str]  # what will happen, one sentence each
    action_url: str  # the action's POST URL
    confirm_label: str  # "Yes, cancel run 12"
    back_url: str  # where "keep" leads without JavaScript
    back_label: str  # "Keep it running"
    hx_target: str = ""  # the region the action's answer replaces (htmx); "" → follow redirects
    focus_after: str = ""  # a CSS selector to focus once the action's answer is swapped in
    danger: bool = True
    hidden: list[tuple[str, str]] = field(default_factory=list)  # inputs sent with the action


def confirm_render(request, confirmation: Confirmation, **context):
    """The confirmation: the fragment for htmx, otherwise a page."""
    context = {"confirm": confirmation, **context}
    template = f"{PAGE}#confirm-form" if request.htmx else PAGE
    return render(request, template, context)
