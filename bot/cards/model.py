"""The neutral card: plain (unescaped) text and trusted mentions; renderers escape and enforce limits."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Mention:
    """A user the bot names itself (an approver, a requester): rendered as a live mention, never escaped away."""

    user_id: str


Inline = Union[str, Mention]


@dataclass(frozen=True)
class Text:
    """Outside text mixed with trusted mentions, e.g. Text.of("Approved by ", Mention("U1"), " at 14:02")."""

    parts: tuple[Inline, ...]

    @classmethod
    def of(cls, *parts: Inline) -> "Text":
        return cls(tuple(p for p in parts if p != ""))

    def plain(self) -> str:
        return "".join(p if isinstance(p, str) else f"@{p.user_id}" for p in self.parts)


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True)
class CheckLine:
    status: str        # pass | fail | warn | skip
    id: str
    detail: str


@dataclass(frozen=True)
class StepLine:
    audience: str      # operator | customer_admin
    text: str


@dataclass(frozen=True)
class Option:
    label: str
    value: str


@dataclass(frozen=True)
class Confirm:
    title: str
    text: str
    confirm: str = "Yes"
    deny: str = "Cancel"


@dataclass(frozen=True)
class Action:
    action_id: str                 # one of CONTRACT.md's action ids
    label: str
    value: str                     # a short id (incident or request id), never outside text
    style: str | None = None       # primary | danger | None
    options: tuple[Option, ...] = ()   # non-empty: a choice (e.g. snooze durations) instead of a button
    confirm: Confirm | None = None
    url: str | None = None


@dataclass(frozen=True)
class Card:
    title: str                                   # header: tenant and cause
    fallback: str                                # notification text; never empty
    severity: str = "warning"                    # critical | warning | ok | info
    status: Text | None = None                   # e.g. "Resolved by @U at 14:02" / "Awaiting approval"
    summary: str = ""
    facts: tuple[Fact, ...] = ()                 # what failed: count, since, kinds
    checks: tuple[CheckLine, ...] = ()
    steps: tuple[StepLine, ...] = ()
    items_title: str = ""
    items: tuple[str, ...] = ()                  # e.g. failed exports or affected tenants; renderers cut with "…and N more"
    actions: tuple[Action, ...] = ()
    context: tuple[Text, ...] = ()               # footer lines
    extra: dict = field(default_factory=dict)    # renderer hints (none required), e.g. "items_shown": 50
