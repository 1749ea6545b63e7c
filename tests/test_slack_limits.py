"""escape_mrkdwn (F-S4) and validate_message (reference §4): each limit broken once."""

from __future__ import annotations

import pytest

from bot.slack.escape import escape_mrkdwn
from bot.slack.limits import (
    MAX_ACTION_ID_CHARS,
    MAX_BLOCKS,
    MAX_BUTTON_TEXT_CHARS,
    MAX_BUTTON_VALUE_CHARS,
    MAX_FIELD_CHARS,
    MAX_HEADER_CHARS,
    MAX_SECTION_TEXT_CHARS,
    MAX_TEXT_CHARS,
    MAX_TOTAL_CHARS,
    total_text_chars,
    validate_message,
)


def test_escape_tenant_name_and_fortnox_message():
    assert (
        escape_mrkdwn("<!channel> Kund & Co <http://evil.example|klicka>")
        == "&lt;!channel&gt; Kund &amp; Co &lt;http://evil.example|klicka&gt;"
    )
    assert escape_mrkdwn("Pris < 0 & moms > 25%") == "Pris &lt; 0 &amp; moms &gt; 25%"


def test_escape_edge_cases():
    assert escape_mrkdwn("<@U123> <!here>") == "&lt;@U123&gt; &lt;!here&gt;"
    assert escape_mrkdwn("&amp;") == "&amp;amp;"  # outside text is literal, even if it looks escaped
    assert escape_mrkdwn("") == ""
    assert escape_mrkdwn("*bold* _x_ ~y~ `z` 'q' \"d\"") == "*bold* _x_ ~y~ `z` 'q' \"d\""  # only & < >
    # the bot's own mention, added after escaping, stays live
    assert escape_mrkdwn("Kund <X>") + " by <@U_ADMIN1>" == "Kund &lt;X&gt; by <@U_ADMIN1>"


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(text: str = "Go", value: str = "inc_1", action_id: str = "diagnose.rerun") -> dict:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "value": value, "action_id": action_id}


def actions(*elements: dict) -> dict:
    return {"type": "actions", "block_id": "actions", "elements": list(elements)}


VALID_BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "acme: login failed"}},
    section("*Cause:* reactivation_required"),
    {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Tenant*\nacme"}, {"type": "mrkdwn", "text": "*Exports*\n3"}]},
    {"type": "divider"},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "checked 14:02"}]},
    actions(button(), {**button("Request", action_id="reactivation.request"), "style": "primary"}),
]


def test_valid_message_passes():
    assert validate_message("acme: login failed", VALID_BLOCKS) == []
    assert validate_message("text only", None) == []
    assert validate_message("x", [section("a" * MAX_SECTION_TEXT_CHARS)]) == []


@pytest.mark.parametrize(
    ("text", "blocks", "expected"),
    [
        (None, VALID_BLOCKS, "text: missing"),
        ("   ", VALID_BLOCKS, "text: empty"),
        ("a" * (MAX_TEXT_CHARS + 1), None, "4001 characters"),
        ("x", [{"type": "divider"}] * (MAX_BLOCKS + 1), "51 blocks"),
        ("x", [section("a" * (MAX_SECTION_TEXT_CHARS + 1))], "text attribute cannot exceed 3000"),
        ("x", [{"type": "header", "text": {"type": "plain_text", "text": "h" * (MAX_HEADER_CHARS + 1)}}], "150"),
        ("x", [actions(button(text="b" * (MAX_BUTTON_TEXT_CHARS + 1)))], "75"),
        ("x", [actions(button(value="v" * (MAX_BUTTON_VALUE_CHARS + 1)))], "2000"),
        ("x", [actions(button(action_id="a" * (MAX_ACTION_ID_CHARS + 1)))], "255"),
        ("x", [actions(*[button(action_id=f"a{i}") for i in range(26)])], "25 elements"),
        ("x", [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}], "10 elements"),
        ("x", [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * (MAX_FIELD_CHARS + 1)}]}], "fields[0]: 2001"),
        ("x", [section("a" * 2500)] * 5, "12500 characters of text in all"),
        ("x", [{"type": "nonsense"}], "unknown block type 'nonsense'"),
        ("x", [actions({"type": "bogus_element"})], "blocks[0].elements[0]"),
        ("x", [{"type": "section", "text": "bare string"}], "must be a Block Kit object"),
        ("x", [{**section("s"), "colour": "red"}], "colour: unknown"),
        ("x", "not a list", "blocks: must be a list"),
        ("x", ["not an object"], "blocks[0]: must be an object"),
    ],
)
def test_each_limit_is_detected(text, blocks, expected):
    problems = validate_message(text, blocks)
    assert any(expected in p for p in problems), problems


def test_total_counts_every_text_string():
    blocks = [section("abc"), {"type": "section", "fields": [{"type": "mrkdwn", "text": "de"}]}, actions(button(text="fgh"))]
    assert total_text_chars(blocks) == 8
    at_limit = [section("a" * 3000)] * (MAX_TOTAL_CHARS // 3000)
    assert validate_message("x", at_limit) == []
