"""Card -> Adaptive Card 1.5 for Microsoft Teams (reference §13).

Outside text goes into RichTextBlock TextRuns, which the schema defines as
"Markdown is not supported": tenant names and Fortnox messages show literally
(Slack markup like `<!channel>` means nothing here, so nothing is escaped).
TextBlock, whose text *is* markdown, only carries the bot's own headings.
Markdown escapes behave differently across Teams clients (AdaptiveCards #4677,
#7474), so they are not relied on; FactSet values, which are markdown, get
their link syntax broken invisibly instead (see `_no_links`).

Buttons are `Action.Execute` (an `adaptiveCard/action` invoke) with
`verb` = the Card's action_id and `data` = {"action_id", "value"}; a choice
adds the chosen value under data[<action_id>]. A confirm becomes an
`Action.ShowCard` holding the question and the real button. No Teams
extensions (`msteams`, mention `entities`) are emitted: the 1.5 schema forbids
them (additionalProperties: false), so the sending adapter adds them if needed.
"""

from __future__ import annotations

from bot.cards.model import Action, Card, Mention, Text

__all__ = ["MAX_ITEMS_SHOWN", "render_adaptive_card"]

SCHEMA_URL = "http://adaptivecards.io/schemas/adaptive-card.json"
ELLIPSIS = "…"
MAX_ITEMS_SHOWN = 12  # same cut as Slack: "…and N more"
MAX_LIST_LINES = 50  # checks, each audience's steps: keeps the card far below Teams' size limit
MAX_LINE_CHARS = 1_000
MAX_TEXT_CHARS = 3_000
CHECK_ICONS = {"pass": "✅", "fail": "❌", "warn": "⚠️", "skip": "➖"}
AUDIENCES = {
    "operator": "Steps for the operator",
    "customer_admin": "Steps for the customer's Fortnox admin",
}
SEVERITY_COLORS = {"critical": "attention", "warning": "warning", "ok": "good", "info": "accent"}
ACTION_STYLES = {"primary": "positive", "danger": "destructive"}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _no_links(text: str) -> str:
    # FactSet text is markdown in Teams: a zero-width space between "]" and "("
    # stops `[label](url)` from becoming a link without changing what is shown.
    return text.replace("](", "]\u200b(")


def _run(text: str, **style) -> dict:
    return {"type": "TextRun", "text": text, **style}


def _rich(inlines: list[dict], **props) -> dict:
    return {"type": "RichTextBlock", "inlines": inlines, **props}


def _heading(text: str) -> dict:
    # The bot's own words only: TextBlock text is markdown.
    return {"type": "TextBlock", "text": text, "weight": "bolder", "wrap": True, "spacing": "medium"}


def _runs(text: Text | str, limit: int = MAX_TEXT_CHARS, **style) -> list[dict]:
    """TextRuns for outside text with mentions.

    Mentions are plain "@U…" text: a real Teams mention needs `<at>` markup plus
    `msteams.entities`, which the Adaptive Card schema does not allow.
    """
    parts = (text,) if isinstance(text, str) else text.parts
    plain = "".join(p if isinstance(p, str) else f"@{p.user_id}" for p in parts)
    runs = []
    for p in parts:
        if isinstance(p, Mention):
            runs.append(_run(f"@{p.user_id}", weight="bolder", **style))
        elif p:
            runs.append(_run(p, **style))
    if len(plain) > limit:  # rare: one run with the cut text beats cutting runs apart
        runs = [_run(_cut(plain, limit), **style)]
    return runs


def _more(shown: int, total: int) -> list[dict]:
    hidden = total - shown
    return [_rich([_run(f"{ELLIPSIS}and {hidden} more", isSubtle=True)])] if hidden > 0 else []


def _checks(card: Card) -> list[dict]:
    if not card.checks:
        return []
    out = [_heading("Checks")]
    for check in card.checks[:MAX_LIST_LINES]:
        inlines = [
            _run(CHECK_ICONS.get(check.status, "•") + " "),
            _run(_cut(check.id, 100), fontType="monospace"),
        ]
        if check.detail:
            inlines.append(_run(" " + _cut(check.detail, MAX_LINE_CHARS)))
        out.append(_rich(inlines, spacing="none"))
    return out + _more(min(len(card.checks), MAX_LIST_LINES), len(card.checks))


def _steps(card: Card) -> list[dict]:
    out: list[dict] = []
    audiences = list(AUDIENCES) + sorted({s.audience for s in card.steps} - set(AUDIENCES))
    for audience in audiences:
        steps = [s for s in card.steps if s.audience == audience]
        if not steps:
            continue
        out.append(_heading(AUDIENCES.get(audience, "Steps")))
        # Numbering restarts per audience, as in Slack.
        for n, step in enumerate(steps[:MAX_LIST_LINES], 1):
            out.append(_rich([_run(f"{n}. {_cut(step.text, MAX_LINE_CHARS)}")], spacing="none"))
        out += _more(min(len(steps), MAX_LIST_LINES), len(steps))
    return out


def _items(card: Card) -> list[dict]:
    if not card.items:
        return []
    out = [_rich([_run(_cut(card.items_title, 200), weight="bolder")])] if card.items_title else []
    shown = card.items[:MAX_ITEMS_SHOWN]
    out += [_rich([_run(f"• {_cut(item, MAX_LINE_CHARS)}")], spacing="none") for item in shown]
    return out + _more(len(shown), len(card.items))


def _data(action: Action) -> dict:
    return {"action_id": action.action_id, "value": action.value}


def _execute(action: Action, title: str, *, inputs: str) -> dict:
    out = {
        "type": "Action.Execute",
        "title": title,
        "verb": action.action_id,
        "data": _data(action),
        # "none" keeps a half-made choice from riding along with (or blocking) other buttons.
        "associatedInputs": inputs,
    }
    if action.style in ACTION_STYLES:
        out["style"] = ACTION_STYLES[action.style]
    return out


def _action(action: Action, *, inputs: str = "none") -> dict:
    if action.url:
        return {"type": "Action.OpenUrl", "title": action.label, "url": action.url}
    if action.confirm is None:
        return _execute(action, action.label, inputs=inputs)
    c = action.confirm
    # Adaptive Cards have no confirm dialog: the button opens the question with the
    # real button inside; clicking the outer button again closes it (the "deny").
    return {
        "type": "Action.ShowCard",
        "title": action.label,
        "card": {
            "type": "AdaptiveCard",
            "body": [_heading(c.title), _rich(_runs(c.text))],
            "actions": [_execute(action, c.confirm, inputs=inputs)],
        },
    }


def _choice(action: Action) -> list[dict]:
    """A choice (e.g. snooze durations): a ChoiceSet plus its own button, side by side in the body."""
    return [
        {
            "type": "Input.ChoiceSet",
            "id": action.action_id,  # the chosen value arrives as data[action_id]
            "style": "compact",
            "placeholder": action.label,
            "choices": [{"title": o.label, "value": o.value} for o in action.options],
        },
        {"type": "ActionSet", "actions": [_action(action, inputs="auto")]},
    ]


def render_adaptive_card(card: Card) -> dict:
    """The card as an Adaptive Card 1.5 dict (the `content` of an attachment
    with contentType application/vnd.microsoft.card.adaptive)."""
    title = " ".join((card.title or card.fallback).split()) or "Fortnox bot"
    body: list[dict] = [
        _rich(
            [_run(_cut(title, 200), size="large", weight="bolder", color=SEVERITY_COLORS.get(card.severity, "default"))]
        )
    ]
    if card.status is not None and card.status.plain().strip():
        body.append(_rich(_runs(card.status)))
    if card.summary.strip():
        body.append(_rich([_run(_cut(card.summary, MAX_TEXT_CHARS))]))
    if card.facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": _no_links(_cut(f.label, 200)), "value": _no_links(_cut(f.value, MAX_LINE_CHARS))}
                    for f in card.facts
                ],
            }
        )
    body += _checks(card) + _steps(card) + _items(card)
    for action in card.actions:
        if action.options:
            body += _choice(action)
    for line in card.context:
        if line.plain().strip():
            body.append(_rich(_runs(line, 500, size="small", isSubtle=True)))

    fallback = next((t.strip() for t in (card.fallback, card.title) if t and t.strip()), "Fortnox bot")
    out = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA_URL,
        "version": "1.5",
        "fallbackText": _cut(fallback, MAX_TEXT_CHARS),
        "body": body,
    }
    actions = [_action(a) for a in card.actions if not a.options]
    if actions:
        out["actions"] = actions
    return out
