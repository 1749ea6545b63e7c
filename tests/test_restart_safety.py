"""kill -9 a replica mid-work, start another on the same PostgreSQL: nothing is lost, nothing is doubled.

Fortnox (`world.latency`) and Slack (`slack.state.latency`) are slowed so work is really in flight when
the process dies; FORTNOX_BOT_JOB_LEASE_SECONDS makes its abandoned jobs claimable within seconds.
"""
from __future__ import annotations

import httpx
import pytest
from sqlmodel import select

from bot.fortnox.tokens import ROTATION_LOST
from storage.models import DiagnosisRecord, Incident, Job
from tests.support.consent import callback_params, consent_in_fortnox, thread_links
from tests.support.replicas import (SCOPES_SHORT, message_with_button, pg_store, replicas,  # noqa: F401
                                    seed_expired, wait_idle, wait_until)
from tests.support.seed import ADMIN, OPERATOR, export_event, post_event, seed_tenant
from tests.support.slack import action_ids, click, message_text

FAST_TAKEOVER = {"FORTNOX_BOT_JOB_LEASE_SECONDS": "2"}


def _incident(store, tenant_id: str) -> Incident:
    with store.db.session() as s:
        (inc,) = s.exec(select(Incident).where(Incident.tenant_id == tenant_id)).all()
        return inc


def _running(store, kind: str) -> int:
    with store.db.session() as s:
        return len(s.exec(select(Job).where(Job.kind == kind, Job.status == "running")).all())


def _top_level(slack, channel: str) -> list:
    return [m for m in slack.messages.values() if m.channel == channel and m.thread_ts is None]


def test_kill_9_mid_diagnosis_and_mid_post_loses_and_doubles_no_alert(replicas, pg_store, world, slack):
    tenants = {f"k{i}": (9500 + i, f"C0K{i}") for i in range(6)}
    for tid, (company, channel) in tenants.items():
        seed_tenant(pg_store, world, tid, company=company, channel=channel, scopes=SCOPES_SHORT)
    (a,) = replicas.start(1, **FAST_TAKEOVER)
    world.latency, slack.state.latency = 1.0, 1.5
    first, second = list(tenants)[:3], list(tenants)[3:]

    for tid in first:
        assert post_event(a.url, export_event(tid, event_id=f"evt-{tid}")).status_code == 202
    # The first three are diagnosed and their alerts are on the wire (Slack takes 1.5 s to answer)…
    wait_until(lambda: _running(pg_store, "slack.sync") == 3, what="three alert posts in flight")
    for tid in second:
        assert post_event(a.url, export_event(tid, event_id=f"evt-{tid}")).status_code == 202
    # …while the other three wait for Fortnox.
    wait_until(lambda: _running(pg_store, "diagnose") == 3, what="three diagnoses in flight")
    a.kill()
    world.latency = slack.state.latency = 0.0

    # Slack finished the posts the dead replica sent; none of their ts reached the store.
    wait_until(lambda: sum(len(_top_level(slack, tenants[t][1])) for t in first) == 3, what="the orphaned posts")
    assert all(_incident(pg_store, t).message_ts is None for t in tenants)

    replicas.start(1, **FAST_TAKEOVER)
    wait_idle(pg_store)

    for tid, (_, channel) in tenants.items():
        inc = _incident(pg_store, tid)
        (message,) = _top_level(slack, channel)           # posted once, whoever posted it
        assert (inc.channel, inc.message_ts) == (channel, message.ts)
        assert inc.cause == "scopes_missing"
        assert "Permissions (scopes) missing" in message.text
        posted = [e for e in pg_store.audit.for_tenant(tid) if e.action == "alert_posted"]
        assert len(posted) == 1
    with pg_store.db.session() as s:
        jobs = s.exec(select(Job).where(Job.kind.in_(("diagnose", "slack.sync")))).all()
    assert jobs and all(j.status == "done" for j in jobs)
    # The orphaned posts were found, not repeated: six posts in all, three of them by the dead replica.
    assert len([c for c in slack.calls_to("chat.postMessage") if c.error is None]) == 6


def test_F_D1_kill_9_mid_refresh_reports_rotation_lost_and_never_resends_the_old_token(replicas, pg_store, world,
                                                                                        slack):
    seed_expired(pg_store, world, "acme", company=9600, channel="C0ACME")
    leases = {**FAST_TAKEOVER, "FORTNOX_BOT_REFRESH_LEASE_SECONDS": "3", "FORTNOX_BOT_HTTP_TIMEOUT_SECONDS": "2"}
    (a,) = replicas.start(1, **leases)
    world.latency = 1.0
    assert post_event(a.url, export_event("acme", event_id="evt-1")).status_code == 202
    # Fortnox has rotated the pair (R1 spent, R2 issued) and its answer is on the way: die now.
    wait_until(lambda: world.token_calls, what="the token call")
    a.kill()
    world.latency = 0.0
    before = pg_store.connections.load("acme")
    assert before.refresh_owner is not None and before.generation == 2   # R2 died with the process

    replicas.start(1, **leases)
    wait_idle(pg_store)

    refreshes = [c for c in world.token_calls if c["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1 and refreshes[0]["ok"]        # R1 was sent once, never again
    cred = pg_store.connections.load("acme")
    assert (cred.state, cred.state_reason, cred.refresh_owner) == ("rotation_lost", ROTATION_LOST, None)
    inc = _incident(pg_store, "acme")
    assert inc.cause == "reactivation_required"
    with pg_store.db.session() as s:
        record = s.get(DiagnosisRecord, inc.diagnosis_id)
    assert any(ROTATION_LOST in c["detail"] for c in record.checks), record.checks
    (message,) = _top_level(slack, "C0ACME")
    assert "reactivation.request" in action_ids(message)


def test_pending_approval_survives_kill_9_and_completes_on_the_new_replica(replicas, pg_store, world, slack):
    seed_tenant(pg_store, world, "acme", company=9700, user=7, channel="C0ACME", scopes=SCOPES_SHORT)
    (a,) = replicas.start(1, **FAST_TAKEOVER)
    assert post_event(a.url, export_event("acme", event_id="evt-1")).status_code == 202
    wait_idle(pg_store)
    inc = _incident(pg_store, "acme")
    alert = slack.messages[(inc.channel, inc.message_ts)]
    response, _ = click(a, slack, alert, "reactivation.request", user=OPERATOR)
    assert response.status_code == 200
    alert = wait_until(lambda: message_with_button(slack, inc, "reactivation.approve"), what="the approve button")
    a.kill()

    (b,) = replicas.start(1, **FAST_TAKEOVER)
    response, key = click(b, slack, alert, "reactivation.approve", user=ADMIN)
    assert response.status_code == 200
    (answer,) = wait_until(lambda: slack.responses(key), what="the approval answer")
    assert answer["text"].startswith("✅ Approved"), answer
    (link,) = wait_until(lambda: thread_links(slack, inc.channel, inc.message_ts), what="the consent link")
    # The customer consents; Fortnox redirects to the public callback URL, which the new replica serves.
    params = callback_params(consent_in_fortnox(link, company=9700, user=7))
    page = httpx.get(f"{b.url}/oauth/fortnox/callback", params=params, timeout=10)
    assert page.status_code == 200, page.text
    wait_idle(pg_store)
    assert pg_store.connections.load("acme").scopes >= {"customer", "invoice"}
    assert _incident(pg_store, "acme").status == "resolved"
    assert "✅ Resolved" in message_text(slack.messages[(inc.channel, inc.message_ts)])


def test_a_refresh_lease_shorter_than_the_http_timeout_is_refused_at_start():
    from bot.settings import SettingsError, load_settings
    from tests.conftest import bot_env

    env = bot_env(db_url="sqlite:///x.db", FORTNOX_BOT_REFRESH_LEASE_SECONDS="5", FORTNOX_BOT_HTTP_TIMEOUT_SECONDS="10")
    with pytest.raises(SettingsError) as refused:
        load_settings(env=env, need="serve")
    assert refused.value.name == "FORTNOX_BOT_REFRESH_LEASE_SECONDS"
    assert "longer than the HTTP timeout (10 s)" in str(refused.value)
