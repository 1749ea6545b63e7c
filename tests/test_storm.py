"""Storms: when every tenant fails for one app-wide reason, Slack gets one platform message, not one per tenant."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.seed import ALERT_CHANNEL, export_event, seed_tenant, signed_webhook
from tests.support.slack import message_text, mrkdwn_texts, only_message

TENANTS = [f"t{i:02d}" for i in range(40)]


def _seed(store, world, *, access_expires_in: int = 3600) -> None:
    for i, tenant_id in enumerate(TENANTS):
        seed_tenant(store, world, tenant_id, company=9000 + i, name=f"Kund {i:02d} AB", access_expires_in=access_expires_in)


def _fail_all(server) -> None:
    def deliver(tenant_id: str) -> int:
        raw, headers = signed_webhook(export_event(tenant_id))
        return client.post(f"{server.url}/webhooks/export-failure", content=raw, headers=headers).status_code

    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(4) as pool:
        assert set(pool.map(deliver, TENANTS)) == {202}
    server.drain(60)


def _one_platform_message(store, slack, cause: str):
    posts = slack.calls_to("chat.postMessage")
    assert 1 <= len(posts) <= 3, [p.args.get("channel") for p in posts]
    (platform,) = [i for i in store.incidents.all() if i.platform]
    assert (platform.cause, platform.status) == (cause, "open")
    children = store.incidents.children(platform.id)
    assert sorted(c.tenant_id for c in children) == TENANTS
    assert all(c.cause == cause and c.message_ts is None for c in children)   # folded: no message of their own
    message = only_message(slack, ALERT_CHANNEL)
    assert platform.message_ts == message.ts
    listing = next(t for t in mrkdwn_texts(message.blocks) if t.startswith("*Affected tenants*"))
    assert listing.split("\n")[1:] == [f"• Kund {i:02d} AB (t{i:02d})" for i in range(40)]
    assert "*Tenants affected*\n40" in message_text(message)
    return platform, message


def test_storm_wrong_client_secret_gives_one_platform_message(server_factory, store, world, slack):
    server = server_factory(FORTNOX_CLIENT_SECRET="wrong")
    _seed(store, world, access_expires_in=30)   # every diagnosis must refresh, and Fortnox refuses the client
    _fail_all(server)
    platform, message = _one_platform_message(store, slack, "client_credentials_invalid")
    assert message.text.startswith("All tenants: ")

    # /fortnox status shows the storm as one line, too.
    from tests.support.slack import command

    status = command(server, slack, "status")[0].json()["text"].split("\n")
    assert status[0] == "1 open incident:"
    assert status[1].startswith("• All tenants (40 tenants affected): ")
    assert status[1].endswith(f" · {platform.id}") and len(status) == 2


def test_storm_fortnox_outage_gives_one_platform_message(server, store, world, slack):
    _seed(store, world)
    world.outage = "html503"
    _fail_all(server)
    platform, message = _one_platform_message(store, slack, "fortnox_unavailable")

    # Fortnox is back: re-running the platform incident's diagnosis resolves every tenant and the message.
    from tests.support.seed import OPERATOR
    from tests.support.slack import click, wait_until

    world.outage = None
    _, key = click(server, slack, message, "diagnose.rerun", user=OPERATOR)
    assert wait_until(lambda: slack.responses(key))[0]["text"] == (
        "Re-running the diagnosis of 40 affected tenants… the result follows in the alert's thread.")
    server.drain(60)
    assert store.incidents.get(platform.id).status == "resolved"
    assert all(c.status == "resolved" for c in store.incidents.children(platform.id))
    thread = [m.text for m in slack.thread(message.channel, message.ts)]
    assert thread == [f"🔎 Re-diagnosis of 40 affected tenants started by <@{OPERATOR}>; this message follows the results."]
    assert "✅ Resolved by the bot (every affected tenant recovered; the last by a healthy re-diagnosis)" in message_text(
        only_message(slack, ALERT_CHANNEL))
    assert len(slack.calls_to("chat.postMessage")) <= 4
