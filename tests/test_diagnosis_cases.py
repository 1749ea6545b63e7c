"""Field cases F-D1 … F-D7 (shared/cases/diagnosis.md), each against the real sandbox and store."""
from __future__ import annotations

import asyncio
import json
import socket
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from bot.cards.diagnosis_card import build_diagnosis_card
from bot.diagnosis.model import Audience, Cause
from bot.fortnox.errors import parse_error
from bot.fortnox.tokens import ROTATION_LOST
from bot.runtime import build_runtime
from bot.sandbox.world import token_hash
from bot.slack.render import render_card
from storage.models import Connection
from storage.types import utcnow
from tests.support.diag import cli_env, diagnose, finish, settings_for, start_cli
from tests.support.seed import seed_tenant

COMPANY = 1234567


@pytest.fixture
def settings(sandbox, db_url):
    return settings_for(sandbox, db_url)


def _row(store, tenant="acme") -> dict:
    """The stored connection as it is at rest (ciphertext) and decrypted."""
    with store.db.session() as s:
        row = s.get(Connection, tenant)
        at_rest = (row.access_token_enc, row.refresh_token_enc, row.generation, row.state)
    cred = store.connections.load(tenant)
    return {"at_rest": at_rest, "access": cred.access_token, "refresh": cred.refresh_token, "state": cred.state}


def _refreshes(world) -> list[dict]:
    return [c for c in world.token_calls if c["grant_type"] == "refresh_token"]


def _checks(d) -> dict:
    return {c.id: c for c in d.checks}


# --- F-D1 -----------------------------------------------------------------------------------------

def _broken_save(*args, **kwargs):
    raise OperationalError("UPDATE connection SET access_token_enc=...", {}, Exception("disk I/O error"))


def test_F_D1_rotated_token_save_fails(store, world, sandbox, settings, monkeypatch):
    tokens = seed_tenant(store, world, access_expires_in=30)
    r1 = tokens["refresh_token"]
    monkeypatch.setattr(store.connections, "finish_refresh", _broken_save)

    first = diagnose(store, settings)

    assert first.cause == Cause.BOT_MISCONFIGURED          # the bot's own fault, not a Fortnox cause
    assert first.storage_fault == "OperationalError while saving the refreshed tokens"
    assert not first.resolved and not first.consent_can_fix
    assert first.summary == ("The bot's own store failed (OperationalError while saving the refreshed tokens); this "
                             "is ours to fix, not the customer's. Fortnox had already spent the previous refresh "
                             "token, so the customer must also activate the integration again.")
    checks = _checks(first)
    assert checks["refresh"].status == "fail" and "store failed to save it" in checks["refresh"].detail
    assert checks["grant"].status == "fail" and ROTATION_LOST in checks["grant"].detail
    assert first.to_json()["storage_fault"] == first.storage_fault
    assert [c["refresh_token_hash"] for c in _refreshes(world)] == [token_hash(r1)]

    monkeypatch.undo()          # the store works again …
    world.advance(3600)         # … an hour later
    second = diagnose(store, settings)

    assert second.cause == Cause.REACTIVATION_REQUIRED
    assert ROTATION_LOST in second.summary
    assert _checks(second)["grant"].status == "fail"
    assert len(_refreshes(world)) == 1                      # R1 was never sent again
    assert world.api_calls == []                           # nor anything else with the lost pair


def test_F_D1_store_down_entirely_then_abandoned_lease_is_rotation_lost(store, world, sandbox, settings, monkeypatch):
    """The store refuses the save AND the marking: the lease left behind is the record of the spent R1."""
    seed_tenant(store, world, access_expires_in=30)
    monkeypatch.setattr(store.connections, "finish_refresh", _broken_save)
    monkeypatch.setattr(store.connections, "mark", _broken_save)

    first = diagnose(store, settings)
    assert first.cause == Cause.BOT_MISCONFIGURED and first.storage_fault
    assert "grant" not in _checks(first)
    assert store.connections.load("acme").refresh_owner is not None   # the lease stayed behind

    monkeypatch.undo()
    with store.db.engine.begin() as conn:   # an hour passes: the lease is long stale
        conn.execute(update(Connection).values(refresh_started_at=utcnow() - timedelta(hours=1)))
    second = diagnose(store, settings)

    assert second.cause == Cause.REACTIVATION_REQUIRED and ROTATION_LOST in second.summary
    assert len(_refreshes(world)) == 1
    cred = store.connections.load("acme")
    assert (cred.state, cred.refresh_owner) == ("rotation_lost", None)


# --- F-D2 -----------------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("variant", ["html503", "connect_timeout", "closed_port"])
def test_F_D2_token_endpoint_unavailable_leaves_tokens_and_says_wait(variant, store, world, sandbox, db_url):
    seed_tenant(store, world, access_expires_in=30)
    before = _row(store)
    over = {}
    if variant == "html503":
        world.outage, world.outage_scope = "html503", "token"
    if variant == "closed_port":
        over["FORTNOX_AUTH_URL"] = f"http://127.0.0.1:{_closed_port()}/oauth-v1"
    settings = settings_for(sandbox, db_url, **over)

    if variant == "connect_timeout":   # a server cannot produce a connect timeout: respx can
        with respx.mock(assert_all_called=False) as router:
            token = router.post(f"{sandbox.auth_url}/token").mock(side_effect=httpx.ConnectTimeout("timed out"))
            router.route().pass_through()
            d = diagnose(store, settings)
        assert token.call_count == 1
    else:
        d = diagnose(store, settings)

    assert d.cause == Cause.FORTNOX_UNAVAILABLE
    assert _row(store) == before
    refresh = _checks(d)["refresh"]
    assert refresh.status == "fail"
    evidence = {"html503": "HTTP 503", "connect_timeout": "no answer (timeout)",
                "closed_port": "no answer (connect_error)"}[variant]
    assert evidence in refresh.detail
    assert "left untouched; try again in 60 s" in refresh.detail
    assert d.retry_after == 60 and d.to_json()["retry_after"] == 60
    assert not d.consent_can_fix
    assert any("do not send a consent link" in s.text for s in d.steps)
    assert _checks(d)["probe"].status == "skip" and world.api_calls == []


def test_F_D2_invalid_client_affects_every_tenant(store, world, sandbox, db_url):
    seed_tenant(store, world, access_expires_in=30)
    before = _row(store)
    d = diagnose(store, settings_for(sandbox, db_url, FORTNOX_CLIENT_SECRET="rotated-in-the-portal"))

    assert d.cause == Cause.CLIENT_CREDENTIALS_INVALID
    assert d.affects_all_tenants and d.to_json()["affects_all_tenants"] is True
    assert not d.consent_can_fix
    assert "HTTP 401 invalid_client" in _checks(d)["client_credentials"].detail
    assert "affects every tenant" in d.summary
    assert _row(store) == before
    assert [c["status"] for c in world.token_calls] == [401]


# --- F-D3 -----------------------------------------------------------------------------------------

MESSAGE_2000311 = "Kan inte logga in, access-token eller client-secret saknas."
BODIES_2000311 = {
    "pascal_string_code": {"ErrorInformation": {"Error": 1, "Message": MESSAGE_2000311, "Code": "2000311"}},
    "lower_int_code": {"ErrorInformation": {"error": 1, "message": MESSAGE_2000311, "code": 2000311}},
    "markup_in_message": {"ErrorInformation": {"error": 1, "message": "<!channel> saknas & <https://x.example|här>",
                                                "code": 2000311}},
}


@pytest.mark.parametrize("name", list(BODIES_2000311))
def test_F_D3_code_2000311_in_any_spelling_is_credentials_missing(name, store, world, sandbox, settings):
    seed_tenant(store, world)
    body = BODIES_2000311[name]
    world.force(COMPANY, "/companyinformation", 401, body)
    message = next(iter(body.values()))
    message = message.get("Message") or message.get("message")

    d = diagnose(store, settings)

    assert d.cause == Cause.CREDENTIALS_MISSING
    probe = _checks(d)["probe"]
    assert probe.status == "fail" and "code 2000311" in probe.detail and message in probe.detail
    assert message in d.summary
    assert world.token_calls == []
    blocks = json.dumps(render_card(build_diagnosis_card(d, "Acme AB"))["blocks"], ensure_ascii=False)
    if name == "markup_in_message":   # shown, but escaped: no live @channel, no link
        assert "&lt;!channel&gt; saknas &amp; &lt;https://x.example|här&gt;" in blocks
        assert "<!channel>" not in blocks
    else:
        assert message in blocks


@pytest.mark.parametrize("where", ["legacy_column", "uuid_as_access_token"])
def test_F_D3_legacy_credential_is_legacy_auth_with_migration_steps(where, store, world, sandbox, settings):
    seed_tenant(store, world, grant=False)
    legacy = world.legacy_token(COMPANY)
    if where == "legacy_column":
        store.connections.store_legacy("acme", legacy)
    else:
        store.connections.store_tokens("acme", access_token=legacy, refresh_token=None,
                                       expires_at=utcnow() + timedelta(days=3650), scopes=())
    world.force(COMPANY, "/companyinformation", 401, BODIES_2000311["pascal_string_code"])

    d = diagnose(store, settings)

    assert d.cause == Cause.LEGACY_AUTH
    assert "legacy Access-Token" in _checks(d)["credentials"].detail
    operator = " ".join(s.text for s in d.steps if s.audience == Audience.OPERATOR)
    customer = " ".join(s.text for s in d.steps if s.audience == Audience.CUSTOMER_ADMIN)
    assert "OAuth2 consent link" in operator and '"oauth"' in operator
    assert "Godkänn & aktivera" in customer and "Hantera användare" in customer
    assert world.api_calls == [] and world.token_calls == []   # a retired credential is never sent


# --- F-D4 -----------------------------------------------------------------------------------------

def test_F_D4_licence_not_login(store, world, sandbox, settings):
    seed_tenant(store, world, kinds=("invoice",), licences={"bokforing"}, access_expires_in=30)

    d = diagnose(store, settings)

    assert [(c["grant_type"], c["status"]) for c in world.token_calls] == [("refresh_token", 200)]
    assert d.cause == Cause.LICENSE_MISSING
    checks = _checks(d)
    assert checks["refresh"].status == "pass" and checks["probe"].status == "pass"
    assert checks["scope:invoice"].status == "fail"
    assert 'code 2001101 "Det finns ingen aktiv licens för önskat scope"' in checks["scope:invoice"].detail
    assert not d.consent_can_fix and d.to_json()["consent_can_fix"] is False
    customer = [s.text for s in d.steps if s.audience == Audience.CUSTOMER_ADMIN]
    assert any("Tilläggsbeställning" in t for t in customer)
    assert any("Do NOT send a consent link" in s.text for s in d.steps)


# --- F-D5 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("code,message", [(2003275, "Ej autentiserad"), (2000663, "Har inte behörighet för scope")])
def test_F_D5_one_forbidden_resource_is_not_an_expired_token(code, message, store, world, sandbox, settings):
    seed_tenant(store, world, kinds=("invoice", "supplierinvoice"))
    world.force(COMPANY, "/supplierinvoices", 403, {"ErrorInformation": {"error": 1, "message": message, "code": code}})

    d = diagnose(store, settings)

    checks = _checks(d)
    assert d.cause == Cause.USER_PERMISSIONS
    assert checks["token"].status == "pass" and checks["probe"].status == "pass"
    assert checks["scope:supplierinvoice"].status == "fail"
    assert f'HTTP 403 code {code} "{message}"' in checks["scope:supplierinvoice"].detail
    assert "supplier invoices not permitted for this connection" in checks["scope:supplierinvoice"].detail
    assert checks["scope:invoice"].status == "pass"            # the other checks still ran
    assert checks["sysadmin"].status == "pass"
    assert all(c.cause != Cause.REACTIVATION_REQUIRED for c in d.checks)
    assert world.token_calls == []                            # a valid token is not refreshed


# --- F-D6 -----------------------------------------------------------------------------------------

USELESS = {
    "envelope_without_code": (503, {"ErrorInformation": {"message": "Service unavailable"}}, '"Service unavailable"'),
    "empty_500": (500, None, "HTTP 500 with an empty body"),
    "html_maintenance_503": (503, "<!DOCTYPE html><html><body><h1>Service Unavailable</h1><p>Fortnox genomför "
                                  "underhåll.</p></body></html>", '"Service Unavailable Fortnox genomför underhåll."'),
}


@pytest.mark.parametrize("name", list(USELESS))
def test_F_D6_bodies_with_nothing_useful_are_fortnox_unavailable(name, store, world, sandbox, settings):
    status, body, shown = USELESS[name]
    raw = body if isinstance(body, str) else json.dumps(body) if body is not None else b""
    assert parse_error(status, raw).category == "unavailable"       # the parser never raises
    seed_tenant(store, world)
    world.force(COMPANY, "/companyinformation", status, body)
    before = _row(store)

    d = diagnose(store, settings)

    assert d.cause == Cause.FORTNOX_UNAVAILABLE
    probe = _checks(d)["probe"]
    assert f"HTTP {status}" in probe.detail and shown in probe.detail
    assert "HTTP" in d.summary
    assert _row(store) == before and world.token_calls == []


def test_F_D6_bare_unauthorized_is_refreshed_once_then_decided(store, world, sandbox, settings):
    """{"message":"unauthorized"} with 401 is an auth failure: one refresh, one retry; still refused → decided."""
    tokens = seed_tenant(store, world)
    world.force(COMPANY, "/companyinformation", 401, {"message": "unauthorized"})

    d = diagnose(store, settings)

    assert [c["refresh_token_hash"] for c in _refreshes(world)] == [token_hash(tokens["refresh_token"])]
    assert d.cause == Cause.REACTIVATION_REQUIRED
    probe = _checks(d)["probe"]
    assert 'HTTP 401 "unauthorized"' in probe.detail and "even a newly issued access token" in probe.detail
    assert [c["path"] for c in world.api_calls] == ["/3/companyinformation"] * 2


def test_F_D6_bare_unauthorized_healed_by_the_refresh_is_token_refreshed(store, world, sandbox, settings):
    seed_tenant(store, world)
    world.force(COMPANY, "/companyinformation", 401, {"message": "unauthorized"})
    refresh = world.refresh

    def refresh_and_heal(*args, **kwargs):   # Fortnox accepts the new token, as with an expired bearer
        world.unforce(COMPANY, "/companyinformation")
        return refresh(*args, **kwargs)

    world.refresh = refresh_and_heal
    d = diagnose(store, settings)

    assert d.cause == Cause.TOKEN_REFRESHED
    assert len(_refreshes(world)) == 1
    assert "Fortnox had refused the previous token" in _checks(d)["probe"].detail


# --- F-D7 -----------------------------------------------------------------------------------------

def _expired_for_fortnox(store, world) -> dict:
    """acme's access token expired an hour ago (for the bot and for Fortnox); R1 is accepted once."""
    tokens = seed_tenant(store, world)
    world.advance(3700)
    cred = store.connections.load("acme")
    store.connections.store_tokens("acme", access_token=cred.access_token, refresh_token=cred.refresh_token,
                                   expires_at=utcnow() - timedelta(seconds=100), scopes=cred.scopes,
                                   company_id=cred.company_id, user_id=cred.user_id, client_id=cred.client_id)
    world.latency = 0.05   # a realistic round trip widens the race
    return tokens


def _assert_one_refresh_and_new_token(store, world, tokens, results) -> None:
    assert len(_refreshes(world)) == 1
    assert all(c["ok"] for c in world.token_calls)
    assert {str(r) for r in results} <= {"token_refreshed", "healthy"}
    cred = store.connections.load("acme")
    assert cred.state == "active" and cred.refresh_token != tokens["refresh_token"]
    assert {c["status"] for c in world.api_calls} == {200}     # nobody used the expired token


def test_F_D7_two_diagnoses_race_in_one_process(store, world, sandbox, settings):
    tokens = _expired_for_fortnox(store, world)

    async def both():
        rt = build_runtime(settings, store)
        try:
            return await asyncio.gather(rt.diagnoser.run("acme", trigger="webhook"),
                                        rt.diagnoser.run("acme", trigger="slash"))
        finally:
            await rt.aclose()

    results = asyncio.run(both())
    _assert_one_refresh_and_new_token(store, world, tokens, [d.cause for d in results])


def test_F_D7_two_replicas_race_on_one_store(store, world, sandbox, settings):
    """Two runtimes (two token managers, like two replicas) share only the store's refresh lease."""
    tokens = _expired_for_fortnox(store, world)

    async def both():
        one, two = build_runtime(settings, store), build_runtime(settings, store)
        try:
            return await asyncio.gather(one.diagnoser.run("acme"), two.diagnoser.run("acme"))
        finally:
            await one.aclose()
            await two.aclose()

    results = asyncio.run(both())
    _assert_one_refresh_and_new_token(store, world, tokens, [d.cause for d in results])


@pytest.mark.postgres
def test_F_D7_two_processes_race_on_one_postgres_store(postgres_url, cipher, world, sandbox):
    from storage import Store

    store = Store(postgres_url, cipher)
    store.upgrade()
    try:
        tokens = _expired_for_fortnox(store, world)
        world.latency = 0.5   # process start-up differs by tens of ms; a slow token endpoint makes them overlap
        env = cli_env(sandbox, postgres_url)
        procs = [start_cli("diagnose", "acme", "--json", env=env) for _ in range(2)]
        runs = [finish(p) for p in procs]
        for run in runs:
            assert run.code == 0, run.err
        _assert_one_refresh_and_new_token(store, world, tokens, [r.json()["cause"] for r in runs])
    finally:
        store.close()
