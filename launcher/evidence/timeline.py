"""A run's message history as a person reads it: one step per message, each with its role, its
text and the tool actions it took, described in words ("click at 640, 360"; 'type "…"').

The Cyberdesk API leaves the shape of `run_message_history` open, so the reader accepts the
shapes a computer-use agent produces: Anthropic's content blocks (`text`; `tool_use` with
`id`/`name`/`input`; `tool_result` whose `content` holds text and `image` blocks) and the
sandbox's older spelling (`tool_use_id`/`tool_name`/`tool_input`, `tool_result` as a string).
`content` may also be a plain string. Anything else is shown as its JSON, never dropped.

Images are never inlined into the page: each one is addressed by its place in the history
(`message.block` or `message.block.part` inside a tool result) and served by its own URL, so a
page with fifty screenshots stays small and its query count does not depend on them.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

# Text longer than this (characters or lines) is folded behind a disclosure.
FOLD_CHARS = 600
FOLD_LINES = 8
SUMMARY_CHARS = 160
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
ROLE_LABELS = {"user": "User", "assistant": "Agent", "system": "System", "tool": "Tool"}


@dataclass(frozen=True)
class Text:
    text: str
    kind: str = "text"  # text, result, error, other (JSON of an unknown block)

    @property
    def folded(self) -> bool:
        return len(self.text) > FOLD_CHARS or self.text.count("\n") >= FOLD_LINES

    @property
    def summary(self) -> str:
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return first[:SUMMARY_CHARS] + ("…" if len(first) > SUMMARY_CHARS else "")


@dataclass(frozen=True)
class Action:
    tool: str
    description: str  # e.g. "click at 640, 360"
    arguments: list[tuple[str, str]]  # every argument, as text


@dataclass(frozen=True)
class Image:
    path: str  # "3.1" or "3.1.0": message, block, part
    media_type: str


@dataclass
class Step:
    number: int  # 1-based
    role: str
    items: list[Text | Action | Image] = field(default_factory=list)
    # Only tool results: in the Anthropic shape these travel as "user" messages, but they are
    # what the computer answered, not something a person said.
    tool_results_only: bool = False

    @property
    def role_label(self) -> str:
        if self.tool_results_only:
            return "Tool result"
        return ROLE_LABELS.get(self.role, self.role.capitalize() or "Message")

    @property
    def actions(self) -> list[Action]:
        return [item for item in self.items if isinstance(item, Action)]


def timeline_steps(history: Any) -> list[Step]:
    """The steps of a message history (empty for None or anything that is not a list)."""
    if not isinstance(history, list):
        return []
    steps = []
    for index, message in enumerate(history):
        results_only = False
        if isinstance(message, dict):
            role = str(message.get("role") or "")
            content = message.get("content")
            items = _content_items(content, str(index))
            results_only = (
                isinstance(content, list)
                and bool(content)
                and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
            )
        else:
            role, items = "", [Text(_json(message), kind="other")]
        steps.append(Step(number=index + 1, role=role, items=items, tool_results_only=results_only))
    return steps


def timeline_action_count(history: Any) -> int:
    """How many tool actions the history holds (the compare page's "steps")."""
    return sum(len(step.actions) for step in timeline_steps(history))


def _content_items(content: Any, path: str) -> list:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)] if content else []
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return [Text(_json(content), kind="other")]
    items: list = []
    for index, block in enumerate(content):
        items.extend(_block_items(block, f"{path}.{index}"))
    return items


def _block_items(block: Any, path: str) -> list:
    if isinstance(block, str):
        return [Text(block)] if block else []
    if not isinstance(block, dict):
        return [Text(_json(block), kind="other")]
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return [Text(text)] if isinstance(text, str) and text else []
    if kind == "tool_use":
        name = str(block.get("name") or block.get("tool_name") or "tool")
        arguments = block.get("input", block.get("tool_input"))
        return [_action(name, arguments if isinstance(arguments, dict) else {"input": arguments})]
    if kind == "tool_result":
        return _result_items(block, path)
    if kind == "image":
        image = _image(block, path)
        return [image] if image else [Text("(an image that cannot be shown)", kind="other")]
    return [Text(_json(block), kind="other")]


def _result_items(block: dict, path: str) -> list:
    error = block.get("is_error") is True
    content = block.get("content", block.get("tool_result"))
    if isinstance(content, str) or content is None:
        return [Text(content, kind="error" if error else "result")] if content else []
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return [Text(_json(content), kind="other")]
    items: list = []
    for index, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "text":
            text = part.get("text")
            if isinstance(text, str) and text:
                items.append(Text(text, kind="error" if error else "result"))
        elif isinstance(part, dict) and part.get("type") == "image":
            image = _image(part, f"{path}.{index}")
            items.append(image or Text("(an image that cannot be shown)", kind="other"))
        else:
            items.append(Text(_json(part), kind="other"))
    return items


def _image(block: dict, path: str) -> Image | None:
    found = _image_bytes(block)
    return Image(path=path, media_type=found[0]) if found else None


def _image_bytes(block: dict) -> tuple[str, bytes] | None:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        return None
    media_type = source.get("media_type")
    data = source.get("data")
    if media_type not in IMAGE_TYPES or not isinstance(data, str):
        return None
    try:
        return media_type, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def timeline_image(history: Any, path: str) -> tuple[str, bytes] | None:
    """The (media type, bytes) of the image at `path` in a history, or None."""
    parts = path.split(".")
    if not all(part.isascii() and part.isdigit() and len(part) <= 6 for part in parts):
        return None
    indexes = [int(part) for part in parts]
    if len(indexes) not in (2, 3) or not isinstance(history, list):
        return None
    node: Any = history
    try:
        message = node[indexes[0]]
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, dict):
            content = [content]
        block = content[indexes[1]]
        if len(indexes) == 3:
            inner = block.get("content", block.get("tool_result"))
            if isinstance(inner, dict):
                inner = [inner]
            block = inner[indexes[2]]
    except (IndexError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(block, dict) or block.get("type") != "image":
        return None
    return _image_bytes(block)


# --- Tool actions in words -------------------------------------------------------------------

_CLICKS = {
    "left_click": "click",
    "click": "click",
    "right_click": "right-click",
    "middle_click": "middle-click",
    "double_click": "double-click",
    "triple_click": "triple-click",
}


def _action(name: str, arguments: dict) -> Action:
    # An action with nothing but its name (a screenshot) is said in full by its description.
    shown = (
        []
        if set(arguments) == {"action"}
        else [(str(key), _value_text(value)) for key, value in arguments.items()]
    )
    return Action(tool=name, description=_describe(name, arguments), arguments=shown)


def _describe(name: str, args: dict) -> str:
    action = args.get("action")
    if not isinstance(action, str):
        if len(args) == 1:
            ((key, value),) = args.items()
            return f"{name}: {_value_text(value)}"
        return name
    where = _point(args.get("coordinate"))
    if action in _CLICKS:
        return f"{_CLICKS[action]} at {where}" if where else _CLICKS[action]
    if action == "mouse_move":
        return f"move the mouse to {where}" if where else "move the mouse"
    if action == "left_click_drag":
        start = _point(args.get("start_coordinate"))
        return f"drag from {start} to {where}" if start and where else "drag"
    if action == "type":
        return f"type “{args.get('text', '')}”"
    if action == "key":
        return f"key {args.get('text', '')}".strip()
    if action == "hold_key":
        return f"hold key {args.get('text', '')}".strip()
    if action == "scroll":
        direction = args.get("scroll_direction") or ""
        amount = args.get("scroll_amount")
        words = ["scroll", str(direction)]
        if amount is not None:
            words.append(f"by {amount}")
        if where:
            words.append(f"at {where}")
        return " ".join(word for word in words if word)
    if action == "screenshot":
        return "screenshot"
    if action == "wait":
        duration = args.get("duration")
        return f"wait {duration} s" if duration is not None else "wait"
    if action == "cursor_position":
        return "read the cursor position"
    return action.replace("_", " ")


def _point(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}, {value[1]}"
    return ""


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)
