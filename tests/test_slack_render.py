"""Card -> Block Kit: layout, escaping (F-S4) and limits (F-S3), each message checked like Slack would."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from bot.cards.model import (
    Action,
    Card,
    CheckLine,
    Confirm,
    Fact,
    Mention,
    Option,
    StepLine,
    Text,
)
from bot.slack.limits import (
    MAX_BLOCKS,
    MAX_FIELD_CHARS,
    MAX_HEADER_CHARS,
    MAX_SECTION_TEXT_CHARS,
    MAX_TEXT_CHARS,
    MAX_TOTAL_CHARS,
    total_text_chars,
    validate_message,
)
from bot.slack.render import render_card, render_text_reply

EVIL = "<!channel> Kund & Co <http://evil.example|klicka>"
EVIL_ESCAPED = "&lt;!channel&gt; Kund &amp; Co &lt;http://evil.example|klicka&gt;"
PRICE = "Pris < 0 & moms > 25%"
PRICE_ESCAPED = "Pris &lt; 0 &amp; moms &gt; 25%"


def assert_valid(message: dict) -> None:
    """What Slack would check, plus what it would not (reference §4)."""
    assert set(message) == {"text", "blocks"}
    blocks = message["blocks"]
    parsed = Block.parse_all(blocks)
    assert None not in parsed
    assert all(b.to_dict() is not None for b in parsed)  # to_dict() runs slack_sdk's validators
    assert validate_message(message["text"], blocks) == []
    assert message["text"].strip()
    assert len(blocks) <= MAX_BLOCKS
    assert total_text_chars(blocks) <= MAX_TOTAL_CHARS


def text_objects(node, kind: str | None = None) -> list[dict]:
    """Every text object ({"type": "mrkdwn"|"plain_text", "text": …}) at any depth."""
    found: list[dict] = []
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            if kind is None or node["type"] == kind:
                found.append(node)
        for value in node.values():
            found += text_objects(value, kind)
    elif isinstance(node, list):
        for value in node:
            found += text_objects(value, kind)
    return found


def mrkdwn_texts(message: dict) -> list[str]:
    return [t["text"] for t in text_objects(message["blocks"], "mrkdwn")]


def full_card(**overrides) -> Card:
    fields = dict(
        title="acme: reactivation required",
        fallback="acme: Fortnox login failed (reactivation required)",
        severity="critical",
        status=Text.of("Awaiting approval, requested by ", Mention("U0REQUEST"), " at 14:02"),
        summary="The refresh token has expired; the customer must activate the integration again.",
        facts=(Fact("Tenant", "acme"), Fact("Failed exports", "3"), Fact("Since", "2026-12-03 14:02")),
        checks=(
            CheckLine("pass", "client_credentials", "Fortnox accepts the client id"),
            CheckLine("fail", "refresh_token", "invalid_grant: refresh token expired"),
            CheckLine("warn", "scopes", "order is not used"),
            CheckLine("skip", "probe", "needs a token"),
        ),
        steps=(
            StepLine("operator", "Request a reactivation below."),
            StepLine("customer_admin", "Open the consent link."),
            StepLine("operator", "Wait for the consent."),
            StepLine("customer_admin", "Log in as a system administrator."),
        ),
        items_title="Failed exports",
        items=("invoice INV-1001", "invoice INV-1002", "customer C-7"),
        actions=(
            Action("diagnose.rerun", "Re-run diagnosis", "inc_42"),
            Action(
                "reactivation.request",
                "Request reactivation",
                "inc_42",
                style="primary",
                confirm=Confirm("Request reactivation?", "An admin must approve it."),
            ),
            Action(
                "incident.snooze",
                "Snooze",
                "inc_42",
                options=(Option("1 hour", "inc_42:1h"), Option("1 day", "inc_42:1d")),
            ),
            Action("incident.resolve", "Mark resolved", "inc_42", style="danger"),
        ),
        context=(Text.of("Incident inc_42 · first seen 14:02"),),
    )
    fields.update(overrides)
    return Card(**fields)


# ---- layout -------------------------------------------------------------------------


def test_full_card_layout_in_order():
    message = render_card(full_card())
    assert_valid(message)
    blocks = message["blocks"]
    assert message["text"] == "acme: Fortnox login failed (reactivation required)"
    assert [b["type"] for b in blocks] == [
        "header", "section", "section", "section", "section", "section", "section", "section", "actions", "context",
    ]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "acme: reactivation required", "emoji": True}
    assert blocks[1]["text"]["text"] == "Awaiting approval, requested by <@U0REQUEST> at 14:02"
    assert blocks[2]["text"]["text"].startswith("The refresh token has expired")
    assert [f["text"] for f in blocks[3]["fields"]] == [
        "*Tenant*\nacme", "*Failed exports*\n3", "*Since*\n2026-12-03 14:02",
    ]
    assert blocks[4]["text"]["text"] == (
        "*Checks*\n"
        "✅ `client_credentials` Fortnox accepts the client id\n"
        "❌ `refresh_token` invalid_grant: refresh token expired\n"
        "⚠️ `scopes` order is not used\n"
        "➖ `probe` needs a token"
    )
    # numbering restarts for each audience
    assert blocks[5]["text"]["text"] == (
        "*Steps for the operator*\n1. Request a reactivation below.\n2. Wait for the consent."
    )
    assert blocks[6]["text"]["text"] == (
        "*Steps for the customer's Fortnox admin*\n1. Open the consent link.\n2. Log in as a system administrator."
    )
    assert blocks[7]["text"]["text"] == "*Failed exports*\n• invoice INV-1001\n• invoice INV-1002\n• customer C-7"
    assert blocks[9]["elements"] == [
        {"type": "mrkdwn", "text": "Incident inc_42 · first seen 14:02", "verbatim": True}
    ]
    # every mrkdwn object carries verbatim: outside text must not be auto-linked
    assert all(t.get("verbatim") is True for t in text_objects(blocks, "mrkdwn"))


def test_actions_keep_action_ids_and_map_to_elements():
    message = render_card(full_card())
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    rerun, request, snooze, resolve = actions["elements"]
    assert rerun == {
        "type": "button",
        "action_id": "diagnose.rerun",
        "text": {"type": "plain_text", "text": "Re-run diagnosis", "emoji": True},
        "value": "inc_42",
    }
    assert request["action_id"] == "reactivation.request"
    assert request["style"] == "primary"
    assert request["confirm"] == {
        "title": {"type": "plain_text", "text": "Request reactivation?"},
        "text": {"type": "plain_text", "text": "An admin must approve it."},
        "confirm": {"type": "plain_text", "text": "Yes"},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": "primary",
    }
    assert snooze == {
        "type": "static_select",
        "action_id": "incident.snooze",
        "placeholder": {"type": "plain_text", "text": "Snooze", "emoji": True},
        "options": [
            {"text": {"type": "plain_text", "text": "1 hour", "emoji": True}, "value": "inc_42:1h"},
            {"text": {"type": "plain_text", "text": "1 day", "emoji": True}, "value": "inc_42:1d"},
        ],
    }
    assert resolve["action_id"] == "incident.resolve" and resolve["style"] == "danger"


def test_url_action_is_a_link_button():
    link = Action("exports.replay", "Open runbook", "inc_42", url="https://runbook.example/fortnox")
    card = full_card(actions=(link,))
    message = render_card(card)
    assert_valid(message)
    (button,) = message["blocks"][-2]["elements"]
    assert button["url"] == "https://runbook.example/fortnox"
    assert button["action_id"] == "exports.replay"


def test_minimal_card_is_header_only_and_fallback_falls_back_to_title():
    message = render_card(Card(title="acme: healthy", fallback="  "))
    assert_valid(message)
    assert message["text"] == "acme: healthy"
    assert message["blocks"] == [
        {"type": "header", "text": {"type": "plain_text", "text": "acme: healthy", "emoji": True}}
    ]


def test_resolved_status_keeps_the_approver_mention():
    card = full_card(status=Text.of("✅ Resolved by ", Mention("U0ADMIN1"), " at 2026-12-03 15:10"), actions=())
    message = render_card(card)
    assert_valid(message)
    assert message["blocks"][1]["text"]["text"] == "✅ Resolved by <@U0ADMIN1> at 2026-12-03 15:10"
    assert not [b for b in message["blocks"] if b["type"] == "actions"]


def test_invalid_mention_id_is_escaped_text_not_a_ping():
    card = full_card(status=Text.of("by ", Mention("U1> <!channel"), " and ", Mention("u_lower")))
    text = render_card(card)["blocks"][1]["text"]["text"]
    assert text == "by @U1&gt; &lt;!channel and @u_lower"


def test_long_title_is_cut_to_the_header_limit():
    message = render_card(full_card(title="acme " * 100))
    header = message["blocks"][0]["text"]["text"]
    assert len(header) == MAX_HEADER_CHARS
    assert header.endswith("…")
    assert_valid(message)


# ---- F-S4 escaping ------------------------------------------------------------------


def evil_card() -> Card:
    return full_card(
        title=EVIL,
        fallback=f"{EVIL}: {PRICE}",
        status=Text.of(EVIL, " approved by ", Mention("U0ADMIN1")),
        summary=f"{EVIL} — {PRICE}",
        facts=(Fact("Tenant", EVIL), Fact(EVIL, PRICE)),
        checks=(CheckLine("fail", "license", PRICE), CheckLine("warn", EVIL, EVIL)),
        steps=(StepLine("operator", EVIL), StepLine("customer_admin", PRICE)),
        items_title=EVIL,
        items=(f"invoice INV-1: {PRICE}", EVIL),
        context=(Text.of(EVIL, " · ", Mention("U0ADMIN1")),),
    )


def test_f_s4_outside_text_is_literal_everywhere():
    message = render_card(evil_card())
    assert_valid(message)
    texts = mrkdwn_texts(message)
    assert message["text"] == f"{EVIL_ESCAPED}: {PRICE_ESCAPED}"
    for t in texts + [message["text"]]:
        assert EVIL not in t and PRICE not in t
    joined = "\n".join(texts)
    # status, summary, 2 facts, check id + detail, step, items title, item, context
    assert joined.count(EVIL_ESCAPED) == 10
    assert joined.count(PRICE_ESCAPED) == 5  # summary, fact, check, step, item
    assert f"{EVIL_ESCAPED} — {PRICE_ESCAPED}" in texts
    # only the bot's own mentions are live; no other Slack control sequence survives
    for t in texts + [message["text"]]:
        for seq in re.findall(r"<[^>]*>", t):
            assert re.fullmatch(r"<@[UW][A-Z0-9]+>", seq), seq
    assert "<@U0ADMIN1>" in message["blocks"][1]["text"]["text"]
    # everything but plain_text (never parsed by Slack, so shown as is) is free of markup
    without_plain = json.dumps(
        [t for t in text_objects(message["blocks"], "mrkdwn")] + [message["text"]], ensure_ascii=False
    ).replace("<@U0ADMIN1>", "")
    for needle in ("<!", "<http", "<@"):
        assert needle not in without_plain


def test_f_s4_plain_text_title_is_kept_literal():
    message = render_card(evil_card())
    # plain_text is not parsed for mentions or links; escaping it would display "&amp;"
    assert message["blocks"][0]["text"] == {"type": "plain_text", "text": EVIL, "emoji": True}


def test_cut_never_splits_an_entity():
    message = render_card(full_card(summary="&" * 5000))
    summary = message["blocks"][2]["text"]["text"]
    assert len(summary) <= MAX_SECTION_TEXT_CHARS
    assert summary.endswith("&amp;…")
    assert summary[:-1] == "&amp;" * ((MAX_SECTION_TEXT_CHARS - 1) // 5)


# ---- F-S3 limits ----------------------------------------------------------------------


def f_s3_card() -> Card:
    message = ("Fortnox: " + "Kan inte hitta kontot i kontoplanen för det angivna räkenskapsåret. " * 4)[:200]
    assert len(message) == 200
    return full_card(
        facts=(Fact("Tenant", "acme"), Fact("Failed exports", "120")),
        items=tuple(f"invoice INV-{1000 + i}: {message}" for i in range(120)),
    )


def test_f_s3_120_failed_exports_fit_one_message():
    message = render_card(f_s3_card())
    assert_valid(message)
    blocks = message["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert total_text_chars(blocks) <= MAX_TOTAL_CHARS
    for t in text_objects(blocks):
        assert len(t["text"]) <= MAX_SECTION_TEXT_CHARS
    (items_text,) = [t for t in mrkdwn_texts(message) if t.startswith("*Failed exports*\n•")]
    assert items_text.count("• invoice INV-") == 12
    assert "• invoice INV-1011:" in items_text and "INV-1012" not in items_text
    assert items_text.endswith("\n…and 108 more")
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["type"] == "button"]
    assert buttons and all(e["value"] == "inc_42" for e in buttons)
    assert message["text"] == "acme: Fortnox login failed (reactivation required)"


def test_huge_card_is_cut_but_keeps_header_status_summary_actions():
    long = "x" * 2500
    card = full_card(
        status=Text.of("Awaiting approval by ", Mention("U0ADMIN1")),
        summary="S" * 2999,
        facts=tuple(Fact(f"Fact {i}", long) for i in range(25)),
        checks=tuple(CheckLine("fail", f"check_{i}", long) for i in range(80)),
        steps=tuple(StepLine("operator" if i % 2 else "customer_admin", long) for i in range(80)),
        items=tuple(long for _ in range(120)),
        context=tuple(Text.of(long) for _ in range(12)),
    )
    message = render_card(card)
    assert_valid(message)
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[1]["text"]["text"] == "Awaiting approval by <@U0ADMIN1>"
    assert blocks[2]["text"]["text"] == "S" * 2999
    assert [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]] == [
        "diagnose.rerun", "reactivation.request", "incident.snooze", "incident.resolve",
    ]
    for b in blocks:
        for f in b.get("fields", []):
            assert len(f["text"]) <= MAX_FIELD_CHARS
    texts = mrkdwn_texts(message)
    # lists were cut with "…and N more", not silently
    cut_notes = [int(n) for t in texts for n in re.findall(r"…and (\d+) more", t)]
    assert len(cut_notes) == 5  # facts, checks, two step lists, items
    shown_facts = sum(len(b.get("fields", [])) for b in blocks) - 1
    assert cut_notes[0] == 25 - shown_facts


def test_many_facts_split_into_sections_of_ten():
    card = full_card(facts=tuple(Fact(f"F{i}", str(i)) for i in range(13)))
    message = render_card(card)
    assert_valid(message)
    fields = [b["fields"] for b in message["blocks"] if "fields" in b]
    assert [len(f) for f in fields] == [10, 3]


def test_long_fallback_is_cut_to_the_text_limit():
    message = render_card(full_card(fallback="<" * 5000))
    assert len(message["text"]) <= MAX_TEXT_CHARS
    assert message["text"].startswith("&lt;&lt;")
    assert_valid(message)


def test_unrenderable_card_raises_value_error():
    card = full_card(actions=(Action("diagnose.rerun", "Re-run", "x" * 2001),))  # button value > 2000
    with pytest.raises(ValueError, match="value"):
        render_card(card)


outside = st.text(alphabet=st.sampled_from("<>&!@|*_`~ \nabcÅäö✅:/.xyz"), max_size=3000)
lists = lambda item: st.lists(item, max_size=130)  # noqa: E731


@settings(max_examples=60, deadline=None)
@given(
    title=outside,
    fallback=outside,
    summary=outside,
    facts=lists(st.builds(Fact, outside, outside)),
    checks=lists(st.builds(CheckLine, st.sampled_from(["pass", "fail", "warn", "skip", "odd"]), outside, outside)),
    steps=lists(st.builds(StepLine, st.sampled_from(["operator", "customer_admin"]), outside)),
    items=lists(outside),
    status=st.lists(st.one_of(outside, st.builds(Mention, st.sampled_from(["U0ADMIN1", "W9", "bad id"]))), max_size=5),
)
def test_any_outside_text_renders_a_valid_message(title, fallback, summary, facts, checks, steps, items, status):
    card = full_card(
        title=title, fallback=fallback, summary=summary, facts=tuple(facts), checks=tuple(checks),
        steps=tuple(steps), items=tuple(items), status=Text.of(*status),
    )
    message = render_card(card)
    assert_valid(message)
    for t in mrkdwn_texts(message) + [message["text"]]:
        for seq in re.findall(r"<[^>]*>", t):
            assert seq in ("<@U0ADMIN1>", "<@W9>"), seq


# ---- text replies -------------------------------------------------------------------


def test_text_reply_escapes_and_keeps_mentions():
    reply = render_text_reply(Text.of("Approved by ", Mention("U0ADMIN1"), f": {EVIL}"))
    assert reply == {"text": f"Approved by <@U0ADMIN1>: {EVIL_ESCAPED}"}
    assert render_text_reply(PRICE) == {"text": PRICE_ESCAPED}


def test_text_reply_is_never_empty_or_too_long():
    with pytest.raises(ValueError):
        render_text_reply("  ")
    reply = render_text_reply("&" * 5000)
    assert len(reply["text"]) <= MAX_TEXT_CHARS
    assert reply["text"].endswith("&amp;…")
