"""The alert as Slack receives it, end to end: within Block Kit's limits (F-S3), outside text inert (F-S4)."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx

from bot.slack.limits import MAX_SECTION_TEXT_CHARS, MAX_TOTAL_CHARS, total_text_chars, validate_message
from tests.support.seed import ADMIN, ALERT_CHANNEL, export_event, post_event, seed_tenant, signed_webhook
from tests.support.slack import action_ids, click, message_text, mrkdwn_texts, only_message, wait_until


def _texts(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "text" and isinstance(v, str)] + \
            [t for k, v in node.items() if k != "text" or not isinstance(v, str) for t in _texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in _texts(v)]
    return []


def _values(message) -> list[str]:
    values = []
    for block in message.blocks:
        for el in block.get("elements", []) if block["type"] == "actions" else []:
            values += [el["value"]] if "value" in el else [o["value"] for o in el.get("options", [])]
    return values


def test_F_S3_a_tenant_with_a_lot_to_say_gets_one_message_within_the_limits(server, store, world, slack):
    seed_tenant(store, world, "acme", company=801)
    world.remove_integration(801)
    def deliver(i: int) -> int:
        message = f"Export {i:03d} refused: " + "Fakturan kunde inte bokföras eftersom kontot saknas. " * 4
        body = {"ErrorInformation": {"error": 1, "message": message[:200], "code": 2000310}}
        raw, headers = signed_webhook(export_event("acme", ref=f"INV-{i:04d}", body=body))
        return client.post(f"{server.url}/webhooks/export-failure", content=raw, headers=headers).status_code

    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(4) as pool:
        assert set(pool.map(deliver, range(120))) == {202}
    server.drain()

    (incident,) = store.incidents.all()
    assert incident.failures == 120   # concurrent deliveries lose no count
    assert len(slack.calls_to("chat.postMessage")) == 1
    # Re-diagnosed (and updated) about every 2 s during the burst, not once per failure.
    assert store.diagnoses.latest("acme") is not None
    assert len(slack.calls_to("chat.update")) < 20
    alert = only_message(slack, ALERT_CHANNEL)
    assert validate_message(alert.text, alert.blocks) == []
    assert len(alert.blocks) <= 50
    assert all(len(t) <= MAX_SECTION_TEXT_CHARS for t in _texts(alert.blocks))
    assert 3_000 < total_text_chars(alert.blocks) <= MAX_TOTAL_CHARS
    exports = next(t for t in mrkdwn_texts(alert.blocks) if t.startswith("*Failed exports*"))
    assert exports.endswith("\n…and 108 more")
    assert exports.count("\n• ") == 12
    assert all(re.fullmatch(r"inc_[0-9a-f]{10}(\|(1h|4h|1d))?", v) for v in _values(alert))
    assert alert.text.strip() and alert.text == "Acme AB: Re-activation needed"
    # Every update of it stayed within the limits too (Slack refuses a message that does not fit).
    assert all(c.error is None for c in slack.calls if c.method in ("chat.postMessage", "chat.update"))


NAME = "<!channel> Kund & Co <http://evil.example|klicka>"
FORTNOX_MESSAGE = "Pris < 0 & moms > 25%"


def test_F_S4_outside_text_that_looks_like_slack_markup_is_shown_literally(server, store, world, slack):
    seed_tenant(store, world, "kund", company=802, name=NAME)
    world.remove_integration(802)
    body = {"ErrorInformation": {"error": 1, "message": FORTNOX_MESSAGE, "code": 2000310}}
    response = post_event(server.url, export_event("kund", body=body, ref="<@U0ADMIN1> & <!here>"))
    server.drain()
    alert = only_message(slack, ALERT_CHANNEL)

    parsed = message_text(alert)   # everything Slack parses as mrkdwn, the fallback included
    assert "&lt;!channel&gt; Kund &amp; Co &lt;http://evil.example|klicka&gt;" in parsed
    assert "Pris &lt; 0 &amp; moms &gt; 25%" in parsed
    assert "&lt;@U0ADMIN1&gt; &amp; &lt;!here&gt;" in parsed
    assert "<!" not in parsed and "<http" not in parsed and "<@" not in parsed   # nobody pinged, no link
    assert alert.text == "&lt;!channel&gt; Kund &amp; Co &lt;http://evil.example|klicka&gt;: Re-activation needed"
    assert all(t["verbatim"] is True for b in alert.blocks for t in _mrkdwn_objects(b))
    # plain_text is never parsed: the header shows the name as typed.
    assert alert.blocks[0]["text"] == {"type": "plain_text", "text": f"{NAME}: Re-activation needed", "emoji": True}

    # The bot's own mentions still work next to it.
    click(server, slack, alert, "incident.resolve", user=ADMIN)
    wait_until(lambda: slack.thread(alert.channel, alert.ts))
    server.drain()
    resolved = message_text(only_message(slack, ALERT_CHANNEL))
    assert f"✅ Resolved by <@{ADMIN}> (marked resolved in Slack)" in resolved
    assert re.findall(r"<[^>]*>", resolved) == [f"<@{ADMIN}>"]
    assert [m.text for m in slack.thread(alert.channel, alert.ts)] == [f"✅ Marked resolved by <@{ADMIN}>"]
    assert action_ids(only_message(slack, ALERT_CHANNEL)) == []
    assert store.incidents.get(response.json()["incident"]).resolved_by == ADMIN


def _mrkdwn_objects(node) -> list[dict]:
    if isinstance(node, dict):
        return ([node] if node.get("type") == "mrkdwn" else []) + [o for v in node.values() for o in _mrkdwn_objects(v)]
    if isinstance(node, list):
        return [o for v in node for o in _mrkdwn_objects(v)]
    return []
