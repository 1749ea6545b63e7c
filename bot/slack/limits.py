"""Block Kit limits, checked before a message goes to Slack.

slack_sdk's `to_dict()` checks per-element limits; the message-level ones
(block count, field length, fallback text, hidden total size) it does not,
so they are checked here (see shared/reference/slack.md §4).
"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

MAX_BLOCKS = 50
MAX_TOTAL_CHARS = 12_000  # Slack answers msg_blocks_too_long at about 13k
MAX_TEXT_CHARS = 4_000  # top-level fallback `text`
MAX_FIELD_CHARS = 2_000  # each section field; slack_sdk does not check it
MAX_SECTION_FIELDS = 10
MAX_SECTION_TEXT_CHARS = 3_000
MAX_HEADER_CHARS = 150
MAX_BUTTON_TEXT_CHARS = 75
MAX_BUTTON_VALUE_CHARS = 2_000
MAX_ACTION_ID_CHARS = 255
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10

__all__ = [
    "MAX_ACTIONS_ELEMENTS",
    "MAX_ACTION_ID_CHARS",
    "MAX_BLOCKS",
    "MAX_BUTTON_TEXT_CHARS",
    "MAX_BUTTON_VALUE_CHARS",
    "MAX_CONTEXT_ELEMENTS",
    "MAX_FIELD_CHARS",
    "MAX_HEADER_CHARS",
    "MAX_SECTION_FIELDS",
    "MAX_SECTION_TEXT_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TOTAL_CHARS",
    "total_text_chars",
    "validate_message",
]


def total_text_chars(node: Any) -> int:
    """Characters of every string stored under a "text" key, at any depth."""
    if isinstance(node, dict):
        return sum(
            len(v) if k == "text" and isinstance(v, str) else total_text_chars(v)
            for k, v in node.items()
        )
    if isinstance(node, list):
        return sum(total_text_chars(v) for v in node)
    return 0


def _check_text(text: str | None) -> list[str]:
    if text is None:
        return ["text: missing (the fallback text is required)"]
    if not isinstance(text, str):
        return [f"text: must be a string, not {type(text).__name__}"]
    if not text.strip():
        return ["text: empty (the fallback text must not be blank)"]
    if len(text) > MAX_TEXT_CHARS:
        return [f"text: {len(text)} characters, more than {MAX_TEXT_CHARS}"]
    return []


def _dropped(sent: Any, kept: Any, path: str) -> list[str]:
    """Parts of `sent` that slack_sdk's model did not keep as sent."""
    if isinstance(sent, dict):
        if not isinstance(kept, dict):
            return [f"{path}: not a valid Block Kit object"]
        out: list[str] = []
        for key, value in sent.items():
            if key not in kept:
                out.append(f"{path}.{key}: unknown or misplaced property")
            else:
                out.extend(_dropped(value, kept[key], f"{path}.{key}"))
        return out
    if isinstance(sent, list):
        if not isinstance(kept, list) or len(kept) != len(sent):
            return [f"{path}: not a valid Block Kit list"]
        return [p for j, (a, b) in enumerate(zip(sent, kept)) for p in _dropped(a, b, f"{path}[{j}]")]
    if isinstance(kept, (dict, list)) or (kept is None and sent is not None):
        return [f"{path}: must be a Block Kit object, not {type(sent).__name__}"]
    return []


def _check_block(i: int, block: Any) -> list[str]:
    if not isinstance(block, dict):
        return [f"blocks[{i}]: must be an object, not {type(block).__name__}"]
    problems: list[str] = []
    try:
        parsed = Block.parse(block)
        if parsed is None:
            return [f"blocks[{i}]: unknown block type {block.get('type')!r}"]
        # to_dict() runs slack_sdk's validators; what it silently drops or
        # coerces (unknown keys/elements, a bare string as a text object)
        # Slack itself rejects, so that is reported too.
        problems.extend(_dropped(block, parsed.to_dict(), f"blocks[{i}]"))
    except SlackObjectFormationError as e:
        problems.append(f"blocks[{i}] ({block.get('type')}): {e}")
    except Exception as e:  # malformed shapes make slack_sdk raise TypeError/AttributeError
        problems.append(f"blocks[{i}] ({block.get('type')}): malformed: {e!r}")
    if block.get("type") == "section" and isinstance(block.get("fields"), list):
        for j, field in enumerate(block["fields"]):
            text = field.get("text") if isinstance(field, dict) else None
            if isinstance(text, str) and len(text) > MAX_FIELD_CHARS:
                problems.append(
                    f"blocks[{i}].fields[{j}]: {len(text)} characters, more than {MAX_FIELD_CHARS}"
                )
    return problems


def validate_message(text: str | None, blocks: list[dict] | None) -> list[str]:
    """Human-readable problems of a chat message; empty when Slack would accept it."""
    problems = _check_text(text)
    if blocks is None:
        return problems
    if not isinstance(blocks, list):
        return problems + [f"blocks: must be a list, not {type(blocks).__name__}"]
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"blocks: {len(blocks)} blocks, more than {MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        problems.extend(_check_block(i, block))
    total = total_text_chars(blocks)
    if total > MAX_TOTAL_CHARS:
        problems.append(f"blocks: {total} characters of text in all, more than {MAX_TOTAL_CHARS}")
    return problems
