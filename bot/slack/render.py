"""Card -> Slack Block Kit message: `render_card(card)` gives the keyword arguments
(`text`, `blocks`) for chat.postMessage / chat.update / respond.

Every string in a Card is outside text. mrkdwn gets `escape_mrkdwn` (F-S4) and
`verbatim: true`; plain_text (header, button labels, options, confirm dialogs) is
never parsed by Slack, so it is left as is (escaping it would show `&amp;`).
Only `Mention` parts become live `<@U…>` mentions.

Limits hold by construction (reference §4, F-S3): the optional body (facts,
checks, steps, items) is rebuilt at stricter levels until the message fits in
50 blocks and MAX_TOTAL_CHARS; header, status, summary, actions and context are
always kept. `validate_message` has the last word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from bot.cards.model import Action, Card, Mention, Text
from bot.slack.escape import escape_mrkdwn
from bot.slack.limits import (
    MAX_ACTIONS_ELEMENTS,
    MAX_BLOCKS,
    MAX_BUTTON_TEXT_CHARS,
    MAX_CONTEXT_ELEMENTS,
    MAX_FIELD_CHARS,
    MAX_HEADER_CHARS,
    MAX_SECTION_FIELDS,
    MAX_SECTION_TEXT_CHARS,
    MAX_TEXT_CHARS,
    MAX_TOTAL_CHARS,
    total_text_chars,
    validate_message,
)

__all__ = ["MAX_ITEMS_SHOWN", "render_card", "render_text_reply"]

ELLIPSIS = "…"
MAX_ITEMS_SHOWN = 12
CHECK_ICONS = {"pass": "✅", "fail": "❌", "warn": "⚠️", "skip": "➖"}
AUDIENCES = {
    "operator": "Steps for the operator",
    "customer_admin": "Steps for the customer's Fortnox admin",
}
_USER_ID = re.compile(r"[UW][A-Z0-9]+")

# Caps for the parts that are always kept, so the body always has room.
_STATUS_CHARS = 1_000
_CONTEXT_CHARS = 1_000  # all context elements together
_ID_CHARS = 100  # a check id
_LABEL_CHARS = 100  # a fact label, a list title
# Slack's other plain_text limits (reference §4): select placeholder, option text,
# confirm dialog title / text / buttons.
_PLACEHOLDER_CHARS = 150
_OPTION_TEXT_CHARS = 75
_MAX_OPTIONS = 100
_CONFIRM_CHARS = {"title": 100, "text": 300, "confirm": 30, "deny": 30}


@dataclass(frozen=True)
class _Level:
    """How much of the body to show: characters per list line / fact value, lines per list."""

    line: int
    fact: int
    lines: int


# From everything to almost nothing; the first level whose message fits wins.
# The last keeps no body at all (header, status, summary, actions, context only).
_LEVELS = (
    _Level(line=2_000, fact=1_800, lines=100),
    _Level(line=600, fact=1_000, lines=60),
    _Level(line=300, fact=500, lines=40),
    _Level(line=160, fact=300, lines=25),
    _Level(line=100, fact=160, lines=15),
    _Level(line=60, fact=100, lines=10),
    _Level(line=40, fact=60, lines=5),
    _Level(line=0, fact=0, lines=0),
)


# ---- text helpers -----------------------------------------------------------------


def _escaped_prefix(raw: str, room: int) -> str:
    """The longest escaped prefix of `raw` at most `room` characters long (never splits an entity)."""
    out: list[str] = []
    used = 0
    for ch in raw:
        e = escape_mrkdwn(ch)
        if used + len(e) > room:
            break
        out.append(e)
        used += len(e)
    return "".join(out)


def _esc(raw: str, limit: int) -> str:
    """escape_mrkdwn(raw), cut to `limit` characters with "…"."""
    full = escape_mrkdwn(raw)
    if len(full) <= limit:
        return full
    if limit < 1:
        return ""
    return _escaped_prefix(raw, limit - 1).rstrip() + ELLIPSIS


def _plain(raw: str, limit: int) -> str:
    """plain_text needs no escaping, only the length cut."""
    return raw if len(raw) <= limit else raw[: limit - 1].rstrip() + ELLIPSIS


def _mention(user_id: str) -> str | None:
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else None


def _inline(text: Text | str, limit: int) -> str:
    """mrkdwn of outside text with trusted mentions, cut to `limit` characters with "…".

    A mention is atomic: it is kept whole or dropped, never cut into `<@U1`.
    """
    parts = (text,) if isinstance(text, str) else text.parts
    pieces: list[tuple[str, str | None]] = []  # (rendered, raw outside text or None for a mention)
    for p in parts:
        if isinstance(p, Mention):
            live = _mention(p.user_id)
            pieces.append((live, None) if live else (escape_mrkdwn(f"@{p.user_id}"), f"@{p.user_id}"))
        else:
            pieces.append((escape_mrkdwn(p), p))
    full = "".join(r for r, _ in pieces)
    if len(full) <= limit:
        return full
    if limit < 1:
        return ""
    room = limit - 1
    out = ""
    for rendered, raw in pieces:
        if len(out) + len(rendered) <= room:
            out += rendered
            continue
        if raw is not None:
            out += _escaped_prefix(raw, room - len(out))
        break
    return out.rstrip() + ELLIPSIS


def _mrkdwn(text: str) -> dict:
    # verbatim: Slack must not auto-link URLs, channel names or @names in outside text.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain_text(text: str) -> dict:
    return {"type": "plain_text", "text": text, "emoji": True}


def _section(text: str) -> dict:
    return {"type": "section", "text": _mrkdwn(text)}


def _sections(title: str, lines: Iterable[str]) -> list[dict]:
    """A titled list, split into as many sections as needed to keep each ≤ 3000 characters."""
    out: list[dict] = []
    current = f"*{title}*" if title else ""
    for line in lines:
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= MAX_SECTION_TEXT_CHARS:
            current = candidate
            continue
        if current:
            out.append(_section(current))
        current = line[:MAX_SECTION_TEXT_CHARS]  # lines are built shorter; this is only a guard
    if current:
        out.append(_section(current))
    return out


def _cut_note(lines: list[str], total: int) -> list[str]:
    """Append "…and N more" when `lines` shows fewer than `total` entries."""
    hidden = total - len(lines)
    return lines + [f"{ELLIPSIS}and {hidden} more"] if hidden > 0 else lines


# ---- body (cut progressively) -----------------------------------------------------


def _facts(card: Card, level: _Level) -> list[dict]:
    if not card.facts or level.lines == 0:
        return []
    fields = []
    for fact in card.facts[: level.lines]:
        label = _esc(fact.label, _LABEL_CHARS)
        room = min(level.fact, MAX_FIELD_CHARS - len(label) - 3)  # "*" + "*\n"
        value = _esc(fact.value, room) or "—"
        fields.append(_mrkdwn(f"*{label}*\n{value}"))
    hidden = len(card.facts) - level.lines
    if hidden > 0:
        fields.append(_mrkdwn(f"{ELLIPSIS}and {hidden} more"))
    return [
        {"type": "section", "fields": fields[i : i + MAX_SECTION_FIELDS]}
        for i in range(0, len(fields), MAX_SECTION_FIELDS)
    ]


def _checks(card: Card, level: _Level) -> list[dict]:
    if not card.checks or level.lines == 0:
        return []
    lines = []
    for check in card.checks[: level.lines]:
        icon = CHECK_ICONS.get(check.status, "•")
        # Backticks would end the code span early; the id is the bot's own, so this is cosmetic.
        cid = _esc(check.id.replace("`", "'"), _ID_CHARS)
        detail = _esc(check.detail, level.line)
        lines.append(f"{icon} `{cid}` {detail}".rstrip())
    return _sections("Checks", _cut_note(lines, len(card.checks)))


def _steps(card: Card, level: _Level) -> list[dict]:
    if not card.steps or level.lines == 0:
        return []
    audiences = list(AUDIENCES) + sorted({s.audience for s in card.steps} - set(AUDIENCES))
    out: list[dict] = []
    for audience in audiences:
        steps = [s for s in card.steps if s.audience == audience]
        if not steps:
            continue
        title = AUDIENCES.get(audience) or f"Steps ({_esc(audience, _LABEL_CHARS)})"
        # Numbering restarts per audience: each list is read by a different person.
        lines = [f"{n}. {_esc(s.text, level.line)}" for n, s in enumerate(steps[: level.lines], 1)]
        out += _sections(title, _cut_note(lines, len(steps)))
    return out


def _items(card: Card, level: _Level) -> list[dict]:
    if not card.items or level.lines == 0:
        return []
    shown = card.items[: min(card.extra.get("items_shown", MAX_ITEMS_SHOWN), level.lines)]
    lines = [f"• {_esc(item, level.line)}" for item in shown]
    return _sections(_esc(card.items_title, _LABEL_CHARS), _cut_note(lines, len(card.items)))


# ---- parts always kept ------------------------------------------------------------


def _header(card: Card) -> dict:
    title = " ".join((card.title or card.fallback).split()) or "Fortnox bot"
    return {"type": "header", "text": _plain_text(_plain(title, MAX_HEADER_CHARS))}


def _confirm(action: Action) -> dict:
    c = action.confirm
    assert c is not None
    out = {
        key: {"type": "plain_text", "text": _plain(getattr(c, key) or key.title(), limit)}
        for key, limit in _CONFIRM_CHARS.items()
    }
    if action.style in ("primary", "danger"):
        out["style"] = action.style
    return out


def _element(action: Action) -> dict:
    if action.options:
        el: dict = {
            "type": "static_select",
            "action_id": action.action_id,
            "placeholder": _plain_text(_plain(action.label, _PLACEHOLDER_CHARS)),
            # Slack sends only the chosen option's value, so option values must carry the id they act on.
            "options": [
                {"text": _plain_text(_plain(o.label, _OPTION_TEXT_CHARS)), "value": o.value}
                for o in action.options[:_MAX_OPTIONS]
            ],
        }
    else:
        el = {
            "type": "button",
            "action_id": action.action_id,
            "text": _plain_text(_plain(action.label, MAX_BUTTON_TEXT_CHARS)),
        }
        if action.value:
            el["value"] = action.value
        if action.url:
            el["url"] = action.url
        if action.style in ("primary", "danger"):
            el["style"] = action.style
    if action.confirm is not None:
        el["confirm"] = _confirm(action)
    return el


def _actions(card: Card) -> list[dict]:
    elements = [_element(a) for a in card.actions]
    return [
        {
            "type": "actions",
            "block_id": "actions" if i == 0 else f"actions-{i // MAX_ACTIONS_ELEMENTS}",
            "elements": elements[i : i + MAX_ACTIONS_ELEMENTS],
        }
        for i in range(0, len(elements), MAX_ACTIONS_ELEMENTS)
    ]


def _context(card: Card) -> list[dict]:
    lines = [t for t in card.context[:MAX_CONTEXT_ELEMENTS] if t.plain().strip()]
    if not lines:
        return []
    each = _CONTEXT_CHARS // len(lines)
    return [{"type": "context", "elements": [_mrkdwn(_inline(t, each)) for t in lines]}]


def _fallback(card: Card) -> str:
    # The notification text is parsed like mrkdwn too, so it is escaped; never empty.
    for candidate in (card.fallback, card.title):
        if candidate and candidate.strip():
            return _esc(candidate.strip(), MAX_TEXT_CHARS)
    return "Fortnox bot"


# ---- public API ---------------------------------------------------------------------


def render_card(card: Card) -> dict:
    """`{"text", "blocks"}` for chat.postMessage / chat.update; raises ValueError if Slack would refuse it."""
    head = [_header(card)]
    if card.status is not None and card.status.plain().strip():
        head.append(_section(_inline(card.status, _STATUS_CHARS)))
    if card.summary.strip():
        head.append(_section(_esc(card.summary, MAX_SECTION_TEXT_CHARS)))
    tail = _actions(card) + _context(card)

    blocks: list[dict] = []
    for level in _LEVELS:
        body = _facts(card, level) + _checks(card, level) + _steps(card, level) + _items(card, level)
        blocks = head + body + tail
        if len(blocks) <= MAX_BLOCKS and total_text_chars(blocks) <= MAX_TOTAL_CHARS:
            break

    text = _fallback(card)
    problems = validate_message(text, blocks)
    if problems:
        raise ValueError("card does not fit a Slack message: " + "; ".join(problems))
    return {"text": text, "blocks": blocks}


def render_text_reply(text: Text | str) -> dict:
    """`{"text"}` for a thread reply, an ephemeral answer or `respond()`: escaped, mentions kept."""
    rendered = _inline(text, MAX_TEXT_CHARS)
    if not rendered.strip():
        raise ValueError("a Slack reply needs non-empty text")
    return {"text": rendered}
