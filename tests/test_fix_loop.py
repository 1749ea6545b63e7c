"""The whole loop over loopback: failure → alert → request → admin approval → consent in Fortnox → callback →
verified tokens → replay → resolved, with the audit trail that tells it."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.cli import main as cli_main
from storage.models import ConsentState
from tests.conftest import ENCRYPTION_KEY
from tests.support.consent import ReplayReceiver, consent_in_fortnox, link_in
from tests.support.seed import ADMIN, OPERATOR, OUTSIDER, TENANT_CHANNEL, export_event, post_event, seed_tenant
from tests.support.slack import action_ids, click, element, message_text, only_message


def answers(slack, key: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
    """What the bot said through a click's response_url (handlers answer after the 3 s ack)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(got := slack.responses(key)) >= count:
            return got
        time.sleep(0.01)
    raise AssertionError(f"no answer on {key} within {timeout}s: {slack.responses(key)}")


def consent_rows(store) -> list[ConsentState]:
    from sqlmodel import select

    with store.db.session() as s:
        return list(s.exec(select(ConsentState)))


@pytest.fixture
def receiver():
    with ReplayReceiver() as r:
        yield r


def test_whole_loop(server_factory, store, world, slack, sandbox, receiver, monkeypatch, capsys, db_url):
    server = server_factory(PLATFORM_REPLAY_URL=receiver.url)
    seed_tenant(store, world, "acme", company=555, user=7, channel=TENANT_CHANNEL, access_expires_in=30)
    world.remove_integration(555)   # the customer removed the integration: every token is dead

    # 1. A signed export failure becomes one alert offering the reactivation request.
    response = post_event(server.url, export_event("acme", event_id="evt_loop"))
    assert response.status_code == 202
    incident_id = response.json()["incident"]
    server.drain()
    alert = only_message(slack, TENANT_CHANNEL)
    assert "reactivation.request" in action_ids(alert)
    assert element(alert, "reactivation.request")["value"] == incident_id

    # 2. An operator (not an admin) requests it: the alert now awaits approval.
    _, key = click(server, slack, alert, "reactivation.request", user=OPERATOR)
    assert "Reactivation link requested for Acme AB" in answers(slack, key)[0]["text"]
    server.drain()
    request = store.requests.latest_for_incident(incident_id)
    assert (request.status, request.requested_by, request.live_key) == ("pending", OPERATOR, "acme")
    alert = only_message(slack, TENANT_CHANNEL)
    assert action_ids(alert)[:3] == ["diagnose.rerun", "reactivation.approve", "reactivation.deny"]
    assert element(alert, "reactivation.approve")["value"] == request.id
    assert f"Reactivation requested by <@{OPERATOR}>" in message_text(alert)

    # 3. Someone who is not an admin clicks Approve: refused, and nothing changes.
    audit_before, calls_before = len(store.audit.for_tenant("acme")), len(slack.calls)
    _, key = click(server, slack, alert, "reactivation.approve", user=OUTSIDER)
    refusal = answers(slack, key)[0]
    assert refusal["response_type"] == "ephemeral"
    assert refusal["text"].startswith("Only Fortnox bot admins") and "Nothing was changed." in refusal["text"]
    server.drain()
    assert store.requests.get(request.id).status == "pending"
    assert len(store.audit.for_tenant("acme")) == audit_before
    assert consent_rows(store) == []
    assert [c.method for c in slack.calls[calls_before:]] == ["response_url"]   # the refusal, nothing else

    # 4. An admin approves: the one consent link appears in the thread, never in the channel itself.
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN)
    assert answers(slack, key)[0]["text"].startswith("✅ Approved.")
    server.drain()
    replies = slack.thread(TENANT_CHANNEL, alert.ts)
    with_link = [r for r in replies if "/auth?" in (r.text or "")]
    assert len(with_link) == 1 and with_link[0].text.startswith(f"🔗 Reactivation approved by <@{ADMIN}>")
    assert "Systemadministratör" in with_link[0].text and "Godkänn &amp; aktivera" in with_link[0].text
    assert all("/auth?" not in (m.text or "") for m in slack.messages.values() if m.thread_ts is None)
    link = link_in(with_link[0].text)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert link.startswith(f"{sandbox.auth_url}/auth?")
    assert query["redirect_uri"] == f"{server.url}/oauth/fortnox/callback"
    assert query["access_type"] == "offline" and "account_type" not in query
    assert set(query["scope"].split()) == {"companyinformation", "customer", "invoice"}   # FORTNOX_SCOPES default
    assert len(consent_rows(store)) == 1 and consent_rows(store)[0].request_id == request.id
    assert "Reactivation approved by" in message_text(only_message(slack, TENANT_CHANNEL))

    # 5. The customer's system administrator approves in Fortnox and is sent back to the bot.
    world.reset_stats()
    redirect = consent_in_fortnox(link, company=555, user=7)
    assert redirect.status_code == 302
    assert redirect.headers["location"].startswith(f"{server.url}/oauth/fortnox/callback?code=")
    landing = httpx.get(redirect.headers["location"], timeout=30)
    assert landing.status_code == 200
    assert "<title>Klart! Integrationen är aktiverad · Done! The integration is activated</title>" in landing.text
    assert landing.headers["cache-control"] == "no-store"
    server.drain()

    # 6. Tokens stored (encrypted) and verified with one code exchange; the replay arrived, signed.
    assert [c["grant_type"] for c in world.token_calls] == ["authorization_code"]
    cred = store.connections.load("acme")
    assert cred.state == "active" and cred.company_id == "555" and cred.generation == 2
    assert len(receiver.calls) == 1
    replay = receiver.calls[0]
    assert replay.signature_ok and replay.headers["webhook-id"] == f"replay_{incident_id}"
    assert replay.body == {"tenant": "acme", "incident": incident_id, "reason": "reactivated"}

    # 7. The alert says resolved by verified consent; the thread tells the story.
    inc = store.incidents.get(incident_id)
    assert (inc.status, inc.resolution) == ("resolved", "verified consent")
    final = message_text(only_message(slack, TENANT_CHANNEL))
    assert "✅ Resolved by the bot (verified consent) at " in final
    thread = [r.text for r in slack.thread(TENANT_CHANNEL, alert.ts)]
    assert any(t.startswith("✅ Consent received and verified") for t in thread)
    assert any(t.startswith("🔁 Asked the platform to re-run") for t in thread)

    # 8. The audit log, in order, with who and the alert's permalink on every fix step.
    rows = store.audit.for_tenant("acme")
    assert [r.action for r in rows] == [
        "incident_opened", "diagnosed", "alert_posted", "requested", "approved", "link_issued",
        "consent_received", "verified", "resolved", "replayed"]
    by_action = {r.action: r for r in rows}
    assert by_action["requested"].actor == OPERATOR and by_action["approved"].actor == ADMIN
    assert by_action["consent_received"].actor == "customer" and by_action["verified"].actor == "bot"
    permalink = by_action["alert_posted"].permalink
    assert permalink and permalink.endswith(alert.ts.replace(".", ""))
    fix_steps = ("requested", "approved", "link_issued", "consent_received", "verified", "resolved", "replayed")
    assert all(by_action[a].permalink == permalink for a in fix_steps)
    assert {r.request_id for r in rows if r.action in fix_steps[:5]} == {request.id}
    assert store.requests.get(request.id).status == "verified" and store.requests.get(request.id).live_key is None

    # `fortnox-bot audit acme` prints the same trail.
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("ENCRYPTION_KEY", ENCRYPTION_KEY)
    assert cli_main(["audit", "acme"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in printed] == [r.action for r in rows]
