"""Fortnox misbehaving is Fortnox's problem: transient causes, no consent button, tokens left exactly as they were.

Each fault is produced by the sandbox over loopback (429s, 5xx, HTML pages, a hanging socket, slow answers)
and reaches the real bot through a signed webhook; the rate-limit burst runs 50 diagnoses at once.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.replicas import wait_until
from tests.support.seed import export_event, post_event, seed_tenant

@pytest.fixture
def db_url(sqlite_url):
    """SQLite only: these are about Fortnox's answers, not the store (tests/test_replicas.py runs PostgreSQL)."""
    return sqlite_url
CONSENT_BUTTONS = {"reactivation.request", "reactivation.approve"}
SHORT_TIMEOUT = {"FORTNOX_BOT_HTTP_TIMEOUT_SECONDS": "1"}


def _tokens(store, tenant_id: str) -> tuple:
    c = store.connections.load(tenant_id)
    return c.access_token, c.refresh_token, c.expires_at, c.generation, c.state, c.refresh_owner


def _stale(store, tenant_id: str) -> None:
    """Make the stored access token look expired, so the diagnosis goes to the token endpoint first."""
    from datetime import timedelta

    from storage.types import utcnow

    c = store.connections.load(tenant_id)
    store.connections.store_tokens(tenant_id, access_token=c.access_token, refresh_token=c.refresh_token,
                                   expires_at=utcnow() - timedelta(minutes=1), scopes=c.scopes,
                                   company_id=c.company_id, user_id=c.user_id, client_id=c.client_id)


def _html_200(world, company):
    world.force(company, "/3/companyinformation", 200, "<html><body>Fortnox is being updated</body></html>")


FAULTS = {
    # name: (arrange(world, company), expected cause, server settings, token endpoint first)
    "api_429": (lambda w, c: setattr(w, "rate_limit", (1, 60.0)), "rate_limited", {}, False),
    "api_html503": (lambda w, c: setattr(w, "outage", "html503"), "fortnox_unavailable", {}, False),
    "api_empty500": (lambda w, c: setattr(w, "outage", "empty500"), "fortnox_unavailable", {}, False),
    "api_no_code_503": (lambda w, c: setattr(w, "outage", "no_code"), "fortnox_unavailable", {}, False),
    "api_html_200": (_html_200, "fortnox_unavailable", {}, False),
    "api_hang": (lambda w, c: (setattr(w, "outage", "hang"), setattr(w, "hang_seconds", 3.0)),
                 "fortnox_unavailable", SHORT_TIMEOUT, False),
    "api_slow": (lambda w, c: setattr(w, "latency", 1.5), "fortnox_unavailable", SHORT_TIMEOUT, False),
    "token_html503": (lambda w, c: (setattr(w, "outage", "html503"), setattr(w, "outage_scope", "token")),
                      "fortnox_unavailable", {}, True),
    "token_hang": (lambda w, c: (setattr(w, "outage", "hang"), setattr(w, "outage_scope", "token"),
                                 setattr(w, "hang_seconds", 3.0)), "fortnox_unavailable", SHORT_TIMEOUT, True),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fortnox_fault_is_transient_offers_no_consent_and_leaves_tokens_alone(fault, server_factory, store, world,
                                                                               slack):
    arrange, expected, settings, via_token = FAULTS[fault]
    seed_tenant(store, world, "acme", company=777, channel="C0ACME")
    if via_token:
        _stale(store, "acme")
    before = _tokens(store, "acme")
    server = server_factory(**settings)
    arrange(world, 777)

    response = post_event(server.url, export_event("acme"))
    assert response.status_code == 202, response.text
    server.drain()

    inc = store.incidents.get(response.json()["incident"])
    assert inc.cause == expected
    assert _tokens(store, "acme") == before          # nothing refreshed, marked dead or left leased
    if via_token:
        # A hanging token endpoint records the call only when it gives up, after the bot timed out.
        wait_until(lambda: world.token_calls, timeout=10, what="the sandbox to record the token call")
        assert [c["grant_type"] for c in world.token_calls] == ["refresh_token"]
        assert not any(c["ok"] for c in world.token_calls)
    else:
        assert world.token_calls == []
    (post,) = slack.calls_to("chat.postMessage")
    shown = json.dumps(post.args["blocks"], ensure_ascii=False)
    assert not CONSENT_BUTTONS & {el.get("action_id") for b in post.args["blocks"] if b["type"] == "actions"
                                  for el in b["elements"]}
    assert "/auth?" not in shown                       # and no consent link anywhere
    record = store.diagnoses.get(inc.diagnosis_id)
    assert all(s.get("audience") != "customer_admin" for s in record.steps), record.steps


def _max_in_window(times: list[float], window: float = 5.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_fifty_concurrent_diagnoses_of_one_tenant_stay_under_fortnox_rate_limit(server_factory, store, world):
    # Only the company probe per diagnosis: 50 calls, so the limiter (24 per 5 s) decides the pace.
    seed_tenant(store, world, "acme", company=778, kinds=(), scopes={"companyinformation"})
    server = server_factory()

    async def burst():
        return await asyncio.gather(*(server.bot.runtime.diagnoser.run("acme", trigger="burst") for _ in range(50)))

    results = server.call(burst(), timeout=60)
    assert {str(d.cause) for d in results} == {"healthy"}
    calls = [c for c in world.api_calls if c["tenant_id"] == 778]
    assert len(calls) == 50
    assert {c["status"] for c in calls} == {200}               # Fortnox never had to say 429
    assert _max_in_window([c["t"] for c in calls]) <= 25
