"""End to end over loopback: a signed export failure becomes one diagnosed Slack alert."""
from __future__ import annotations

from tests.support.seed import ALERT_CHANNEL, TENANT_CHANNEL, export_event, post_event, seed_tenant


def _all_text(message) -> str:
    import json

    return json.dumps(message.blocks, ensure_ascii=False) + message.text


def test_revoked_integration_posts_one_reactivation_alert(server, store, world, slack):
    seed_tenant(store, world, "acme", company=555, channel=TENANT_CHANNEL, access_expires_in=30)
    world.remove_integration(555)   # the customer removed the integration in Fortnox

    first = post_event(server.url, export_event("acme", event_id="evt_1"))
    assert first.status_code == 202, first.text
    assert first.json()["duplicate"] is False
    incident_id = first.json()["incident"]
    server.drain()

    posts = slack.calls_to("chat.postMessage")
    assert len(posts) == 1
    assert posts[0].args["channel"] == TENANT_CHANNEL
    message = slack.messages[(TENANT_CHANNEL, posts[0].args.get("ts") or list(slack.messages)[0][1])] \
        if False else list(slack.messages.values())[0]
    text = _all_text(message)
    assert "Acme AB" in text
    assert "reactivation.request" in text
    inc = store.incidents.get(incident_id)
    assert inc.cause == "reactivation_required"
    assert inc.message_ts == message.ts

    # A second failure updates the same message instead of posting again.
    second = post_event(server.url, export_event("acme", event_id="evt_2", ref="INV-1002"))
    assert second.json()["incident"] == incident_id
    server.drain()
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert len(slack.calls_to("chat.update")) >= 1
    assert store.incidents.get(incident_id).failures == 2
    assert "INV-1002" in _all_text(list(slack.messages.values())[0])


def test_healthy_tenant_posts_nothing(server, store, world, slack):
    seed_tenant(store, world, "acme", company=556)
    response = post_event(server.url, export_event("acme"))
    assert response.status_code == 202
    server.drain()
    assert slack.calls_to("chat.postMessage") == []
    assert store.incidents.get(response.json()["incident"]).status == "resolved"


def test_unknown_tenant_is_kept_and_alerted_in_alert_channel(server, store, slack):
    response = post_event(server.url, export_event("ghost"))
    assert response.status_code == 202
    server.drain()
    posts = slack.calls_to("chat.postMessage")
    assert len(posts) == 1 and posts[0].args["channel"] == ALERT_CHANNEL
    assert store.incidents.get(response.json()["incident"]).cause == "tenant_unknown"
