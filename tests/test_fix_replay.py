"""Replay after a verified consent: signed like the webhook we receive, one idempotency key per incident, retried."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.support.consent import ReplayReceiver, approve_directly, consent_in_fortnox, failing_incident
from tests.support.seed import OPERATOR, TENANT_CHANNEL
from tests.support.slack import action_ids, click, only_message


@pytest.fixture
def receiver():
    with ReplayReceiver() as r:
        yield r


def fixed_by_consent(server, store, world) -> str:
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    page = httpx.get(consent_in_fortnox(decision.link, company=555, user=7).headers["location"], timeout=30)
    assert page.status_code == 200, page.text
    server.drain()
    assert store.incidents.get(incident_id).status == "resolved"
    return incident_id


def answer(slack, key: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := slack.responses(key):
            return got[0]["text"]
        time.sleep(0.01)
    raise AssertionError(f"no answer on {key}")


def replays(store) -> list:
    return [r for r in store.audit.for_tenant("acme") if r.action.startswith("replay")]


def test_replay_is_retried_with_the_same_idempotency_key(server_factory, store, world, slack, receiver):
    receiver.statuses = [503, 500]   # the platform is briefly down
    server = server_factory(PLATFORM_REPLAY_URL=receiver.url)
    incident_id = fixed_by_consent(server, store, world)
    assert len(receiver.calls) == 3
    assert {c.headers["webhook-id"] for c in receiver.calls} == {f"replay_{incident_id}"}
    assert all(c.signature_ok for c in receiver.calls)
    assert all(c.body == {"tenant": "acme", "incident": incident_id, "reason": "reactivated"} for c in receiver.calls)
    assert [(r.action, r.actor, r.detail) for r in replays(store)] == \
        [("replayed", "bot", {"status": 202, "key": f"replay_{incident_id}"})]


def test_manual_replay_from_the_resolved_alert(server_factory, store, world, slack, receiver):
    server = server_factory(PLATFORM_REPLAY_URL=receiver.url)
    incident_id = fixed_by_consent(server, store, world)
    alert = only_message(slack, TENANT_CHANNEL)
    assert action_ids(alert) == ["exports.replay"]   # a resolved alert keeps only the replay
    _, key = click(server, slack, alert, "exports.replay", user=OPERATOR)
    assert answer(slack, key).startswith("🔁 Asking the platform to re-run acme's failed exports")
    server.drain()
    assert [c.headers["webhook-id"] for c in receiver.calls] == [f"replay_{incident_id}"] * 2
    assert [r.actor for r in replays(store)] == ["bot", OPERATOR]


def test_platform_refusing_the_replay_is_reported(server_factory, store, world, slack, receiver):
    receiver.statuses = [422]
    server = server_factory(PLATFORM_REPLAY_URL=receiver.url)
    incident_id = fixed_by_consent(server, store, world)
    assert len(receiver.calls) == 1   # a 4xx is not retried
    assert [(r.action, r.detail) for r in replays(store)] == [("replay_failed", {"status": 422})]
    inc = store.incidents.get(incident_id)
    assert any(m.text.startswith("⚠️ The platform refused the replay (HTTP 422)")
               for m in slack.thread(inc.channel, inc.message_ts))


def test_no_replay_and_no_button_without_the_setting(server, store, world, slack, receiver):
    incident_id = failing_incident(server, store, world)
    assert "exports.replay" not in action_ids(only_message(slack, TENANT_CHANNEL))
    decision = approve_directly(server, incident_id)
    httpx.get(consent_in_fortnox(decision.link, company=555, user=7).headers["location"], timeout=30)
    server.drain()
    alert = only_message(slack, TENANT_CHANNEL)
    assert action_ids(alert) == [] and store.incidents.get(incident_id).status == "resolved"
    assert store.jobs.pending("fix.replay") == [] and replays(store) == []
    _, key = click(server, slack, alert, "exports.replay", user=OPERATOR, value=incident_id)   # an old button
    assert answer(slack, key) == "Replays are not configured (PLATFORM_REPLAY_URL is not set)."
    assert receiver.calls == []
