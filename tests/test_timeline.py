"""The message history as a timeline (launcher/evidence/timeline.py) and how the pages render
it: text, tool actions in words, screenshots as thumbnails, everything escaped."""

import base64

import pytest
from django.template.loader import render_to_string

from launcher.evidence.attempts import attempt_evidence
from launcher.evidence.timeline import (
    Action,
    Image,
    Text,
    timeline_action_count,
    timeline_image,
    timeline_steps,
)
from launcher.models import Run
from launcher.sandbox.screens import screenshot_base64, screenshot_png

PNG = screenshot_png(seed="test", step=1, pointer=(640, 360))
PNG_B64 = base64.b64encode(PNG).decode()

# The Anthropic computer-use shape, as the sandbox (and a Claude agent) writes it.
REALISTIC = [
    {"role": "user", "content": [{"type": "text", "text": "Look up <b>c-1</b> in the CRM."}]},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "I'll take a screenshot first."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "computer",
                "input": {"action": "screenshot"},
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    }
                ],
            }
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Clicking the search box."},
            {
                "type": "tool_use",
                "id": "toolu_2",
                "name": "computer",
                "input": {"action": "left_click", "coordinate": [420, 330]},
            },
            {
                "type": "tool_use",
                "id": "toolu_3",
                "name": "computer",
                "input": {"action": "type", "text": "<script>alert(1)</script>"},
            },
            {
                "type": "tool_use",
                "id": "toolu_4",
                "name": "computer",
                "input": {"action": "key", "text": "Return"},
            },
            {
                "type": "tool_use",
                "id": "toolu_5",
                "name": "computer",
                "input": {
                    "action": "scroll",
                    "coordinate": [640, 420],
                    "scroll_direction": "down",
                    "scroll_amount": 3,
                },
            },
        ],
    },
    {"role": "assistant", "content": "x" * 2000},
]


def test_each_message_is_a_step_with_its_role_text_and_actions():
    steps = timeline_steps(REALISTIC)
    assert [(s.number, s.role_label) for s in steps] == [
        (1, "User"),
        (2, "Agent"),
        (3, "Tool result"),
        (4, "Agent"),
        (5, "Agent"),
    ]
    assert steps[0].items == [Text("Look up <b>c-1</b> in the CRM.")]
    assert [a.description for a in steps[3].actions] == [
        "click at 420, 330",
        "type “<script>alert(1)</script>”",
        "key Return",
        "scroll down by 3 at 640, 420",
    ]
    assert steps[1].actions[0] == Action(tool="computer", description="screenshot", arguments=[])
    assert steps[2].items == [Image(path="2.0.0", media_type="image/png")]
    assert steps[4].items[0].folded and len(steps[4].items[0].summary) <= 161
    assert timeline_action_count(REALISTIC) == 5


def test_the_older_sandbox_spelling_and_odd_blocks_are_read_too():
    history = [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "tool_use_id": "t1",
                    "tool_name": "computer",
                    "tool_input": {"action": "double_click", "coordinate": [1, 2]},
                },
                {"type": "tool_result", "tool_use_id": "t1", "tool_result": "Screenshot captured"},
                {
                    "type": "tool_use",
                    "name": "declare_task_failed",
                    "input": {"reason": "No login"},
                },
                {"type": "thinking", "thinking": "hmm"},
            ],
        },
        "not a message",
        {"role": "assistant"},
    ]
    steps = timeline_steps(history)
    assert steps[0].actions[0].description == "double-click at 1, 2"
    assert steps[0].items[1] == Text("Screenshot captured", kind="result")
    assert steps[0].actions[1].description == "declare_task_failed: No login"
    assert steps[0].items[3].kind == "other" and "thinking" in steps[0].items[3].text
    assert steps[1].items[0].kind == "other"
    assert steps[2].items == []
    assert timeline_steps(None) == [] and timeline_steps({"a": 1}) == []


def test_an_image_is_found_by_its_place_and_bad_ones_are_not_served():
    assert timeline_image(REALISTIC, "2.0.0") == ("image/png", PNG)
    assert timeline_image(REALISTIC, "2.0") is None  # the tool result, not an image
    assert timeline_image(REALISTIC, "9.0") is None
    assert timeline_image(REALISTIC, "a.b") is None
    svg = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/svg+xml",
                        "data": base64.b64encode(b"<svg/>").decode(),
                    },
                },
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"},
                },
            ],
        }
    ]
    assert timeline_image(svg, "0.0") is None  # only raster types: an SVG could carry script
    assert timeline_image(svg, "0.1") is None
    assert [item.kind for item in timeline_steps(svg)[0].items] == ["other", "other"]


@pytest.mark.django_db
def test_the_timeline_renders_text_actions_and_thumbnails_escaped():
    run = Run(pk=7, attempt=1, status="success", message_history=REALISTIC)
    html = render_to_string(
        "launcher/parts/timeline.html",
        {"run": run, "evidence": attempt_evidence(run, number=1), "image_attempt": 1},
    )
    assert '<h2 id="timeline-heading">Timeline</h2>' in html
    assert "Look up &lt;b&gt;c-1&lt;/b&gt; in the CRM." in html and "<b>c-1</b>" not in html
    assert "type “&lt;script&gt;alert(1)&lt;/script&gt;”" in html and "<script>" not in html
    assert "click at 420, 330" in html and "scroll down by 3 at 640, 420" in html
    image_url = "/runs/7/attempts/1/images/2.0.0"
    assert f'<a class="thumb" href="{image_url}"' in html and f'<img src="{image_url}"' in html
    assert "<summary>" + "x" * 160 + "…</summary>" in html  # long text folded
    assert "<summary>Raw</summary>" in html


def test_the_sandbox_screenshots_are_small_valid_pngs():
    png = base64.b64decode(screenshot_base64(seed="run", step=3, pointer=(10, 10)))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 2000
    assert png != base64.b64decode(screenshot_base64(seed="run", step=4, pointer=(10, 10)))
