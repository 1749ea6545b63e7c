"""Card -> Adaptive Card 1.5: the same Cards as Slack, validated against the published schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bot.cards.model import Action, Card, CheckLine, Confirm, Fact, Mention, Option, StepLine, Text
from bot.teams.render import render_adaptive_card

SCHEMA_PATH = Path(__file__).resolve().parents[1] / ".." / "shared" / "schemas" / "adaptive-card-1.5.schema.json"
EVIL = "<!channel> Kund & Co <http://evil.example|klicka>"
PRICE = "Pris < 0 & moms > 25%"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft6Validator:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"Adaptive Card schema not found at {SCHEMA_PATH} (shared/schemas is outside this repo)")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft6Validator.check_schema(schema)
    return jsonschema.Draft6Validator(schema)


def card(**overrides) -> Card:
    fields = dict(
        title="acme: reactivation required",
        fallback="acme: Fortnox login failed",
        severity="critical",
        status=Text.of("Awaiting approval, requested by ", Mention("U0REQUEST")),
        summary="The refresh token has expired.",
        facts=(Fact("Tenant", "acme"), Fact("Failed exports", "3")),
        checks=(
            CheckLine("pass", "client_credentials", "accepted"),
            CheckLine("fail", "refresh_token", "invalid_grant"),
        ),
        steps=(
            StepLine("operator", "Request a reactivation."),
            StepLine("customer_admin", "Open the consent link."),
            StepLine("operator", "Wait for the consent."),
        ),
        items_title="Failed exports",
        items=("invoice INV-1001", "invoice INV-1002"),
        actions=(
            Action("diagnose.rerun", "Re-run diagnosis", "inc_42"),
            Action(
                "reactivation.request",
                "Request reactivation",
                "inc_42",
                style="primary",
                confirm=Confirm("Request reactivation?", "An admin must approve it.", confirm="Request"),
            ),
            Action("incident.snooze", "Snooze", "inc_42", options=(Option("1 hour", "1h"), Option("1 day", "1d"))),
            Action("incident.resolve", "Mark resolved", "inc_42", style="danger"),
            Action("exports.replay", "Runbook", "inc_42", url="https://runbook.example/fortnox"),
        ),
        context=(Text.of("Incident inc_42"),),
    )
    fields.update(overrides)
    return Card(**fields)


def all_nodes(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from all_nodes(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_nodes(v)


def texts_of(node) -> list[str]:
    return [n["text"] for n in all_nodes(node) if n.get("type") in ("TextRun", "TextBlock")]


def test_full_card_validates_and_has_the_expected_shape(validator):
    ac = render_adaptive_card(card())
    validator.validate(ac)
    assert ac["type"] == "AdaptiveCard" and ac["version"] == "1.5"
    assert ac["fallbackText"] == "acme: Fortnox login failed"
    title = ac["body"][0]["inlines"][0]
    assert title["text"] == "acme: reactivation required" and title["color"] == "attention"
    assert [r["text"] for r in ac["body"][1]["inlines"]] == ["Awaiting approval, requested by ", "@U0REQUEST"]
    (factset,) = [b for b in ac["body"] if b["type"] == "FactSet"]
    assert factset["facts"] == [{"title": "Tenant", "value": "acme"}, {"title": "Failed exports", "value": "3"}]
    texts = texts_of(ac["body"])
    assert ["✅ ", "client_credentials", " accepted"] == texts[texts.index("Checks") + 1 : texts.index("Checks") + 4]
    # numbering restarts per audience
    i = texts.index("Steps for the operator")
    assert texts[i + 1 : i + 3] == ["1. Request a reactivation.", "2. Wait for the consent."]
    j = texts.index("Steps for the customer's Fortnox admin")
    assert texts[j + 1] == "1. Open the consent link."
    assert "• invoice INV-1002" in texts


def test_actions_keep_action_ids_as_verbs(validator):
    ac = render_adaptive_card(card())
    validator.validate(ac)
    rerun, request, resolve, runbook = ac["actions"]
    assert rerun == {
        "type": "Action.Execute",
        "title": "Re-run diagnosis",
        "verb": "diagnose.rerun",
        "data": {"action_id": "diagnose.rerun", "value": "inc_42"},
        "associatedInputs": "none",
    }
    assert request["type"] == "Action.ShowCard" and request["title"] == "Request reactivation"
    (inner,) = request["card"]["actions"]
    assert inner["verb"] == "reactivation.request" and inner["title"] == "Request"
    assert inner["data"] == {"action_id": "reactivation.request", "value": "inc_42"}
    assert inner["style"] == "positive"
    assert texts_of(request["card"]["body"]) == ["Request reactivation?", "An admin must approve it."]
    assert resolve["verb"] == "incident.resolve" and resolve["style"] == "destructive"
    assert runbook == {"type": "Action.OpenUrl", "title": "Runbook", "url": "https://runbook.example/fortnox"}
    # the choice: an input named after the action id, and its own Execute button
    (choice,) = [b for b in ac["body"] if b["type"] == "Input.ChoiceSet"]
    assert choice["id"] == "incident.snooze" and choice["placeholder"] == "Snooze"
    assert choice["choices"] == [{"title": "1 hour", "value": "1h"}, {"title": "1 day", "value": "1d"}]
    (action_set,) = [b for b in ac["body"] if b["type"] == "ActionSet"]
    (snooze,) = action_set["actions"]
    assert snooze["verb"] == "incident.snooze" and snooze["associatedInputs"] == "auto"
    assert snooze["data"] == {"action_id": "incident.snooze", "value": "inc_42"}


def test_outside_text_stays_literal(validator):
    evil = card(
        title=EVIL,
        fallback=EVIL,
        summary=PRICE,
        facts=(Fact("Tenant", EVIL), Fact("Link", "[klicka](http://evil.example)")),
        checks=(CheckLine("fail", "license", PRICE),),
        items=(EVIL,),
    )
    ac = render_adaptive_card(evil)
    validator.validate(ac)
    assert ac["fallbackText"] == EVIL
    assert ac["body"][0]["inlines"][0]["text"] == EVIL
    texts = texts_of(ac["body"])
    assert PRICE in texts and " " + PRICE in texts and "• " + EVIL in texts
    facts = {f["title"]: f["value"] for b in ac["body"] if b["type"] == "FactSet" for f in b["facts"]}
    assert facts["Tenant"] == EVIL
    assert facts["Link"] == "[klicka]\u200b(http://evil.example)"  # shown the same, but no link
    assert "&lt;" not in json.dumps(ac) and "&amp;" not in json.dumps(ac)  # Slack escaping does not leak here
    # outside text is never put into markdown TextBlocks
    assert all(EVIL not in t["text"] for t in all_nodes(ac) if t.get("type") == "TextBlock")


def test_items_are_cut_like_slack(validator):
    ac = render_adaptive_card(card(items=tuple(f"invoice INV-{i}: " + "x" * 200 for i in range(120))))
    validator.validate(ac)
    texts = texts_of(ac["body"])
    assert sum(t.startswith("• invoice INV-") for t in texts) == 12
    assert "…and 108 more" in texts


def test_minimal_card_validates(validator):
    ac = render_adaptive_card(Card(title="acme: healthy", fallback="", severity="ok"))
    validator.validate(ac)
    assert ac["fallbackText"] == "acme: healthy"
    assert "actions" not in ac
    assert ac["body"] == [
        {
            "type": "RichTextBlock",
            "inlines": [
                {"type": "TextRun", "text": "acme: healthy", "size": "large", "weight": "bolder", "color": "good"}
            ],
        }
    ]


def test_schema_rejects_teams_extensions(validator):
    # Why mentions are plain "@id": the schema refuses msteams/entities, so the check has teeth.
    ac = render_adaptive_card(card())
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**ac, "msteams": {"entities": []}})
