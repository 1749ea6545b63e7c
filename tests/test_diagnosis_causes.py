"""Every cause of CONTRACT.md, produced by real behaviour of the Fortnox sandbox and read back through
`fortnox-bot diagnose TENANT --json`: the cause, and the failing check that proves it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import httpx
import pytest
from cryptography.fernet import Fernet

from bot.diagnosis.model import Cause
from tests.support.diag import call_main, cli_env, diagnose, run_cli, settings_for
from tests.support.seed import CLIENT_ID, seed_tenant

COMPANY = 1234567


@dataclass(frozen=True)
class Scenario:
    name: str
    cause: Cause
    setup: Callable            # (store, world, sandbox) -> None, arranges the world as it happens in the field
    check: str | None          # id of the failing check that proves the cause (None: nothing fails)
    evidence: tuple[str, ...]  # texts that check's detail must mention
    env: dict = field(default_factory=dict)   # bot settings, by their CONTRACT.md names
    tenant: str = "acme"
    token_calls: int = 0       # refresh grants the sandbox must have seen


def _healthy(store, world, sandbox):
    seed_tenant(store, world)


def _expired(store, world, sandbox):
    seed_tenant(store, world, access_expires_in=30)


def _nothing_stored(store, world, sandbox):
    seed_tenant(store, world, grant=False)


def _garbled(store, world, sandbox):
    seed_tenant(store, world, grant=False)
    store.connections.store_tokens("acme", access_token="not-a-token", refresh_token=None,
                                   expires_at=datetime.now(timezone.utc) + timedelta(hours=1), scopes=())


def _integration_removed(store, world, sandbox):
    seed_tenant(store, world, access_expires_in=30)
    world.remove_integration(COMPANY)


def _refresh_token_used_elsewhere(store, world, sandbox):
    tokens = seed_tenant(store, world, access_expires_in=30)
    world.refresh(CLIENT_ID, tokens["refresh_token"])   # e.g. a second copy of the integration refreshed first


def _scope_not_granted(store, world, sandbox):
    seed_tenant(store, world, scopes={"companyinformation", "invoice", "profile"})


def _no_licence(store, world, sandbox):
    seed_tenant(store, world, kinds=("invoice",), licences={"bokforing"}, access_expires_in=30)


def _bookkeeper_only(store, world, sandbox):
    seed_tenant(store, world, sysadmin=False, rights={"customer"})


def _legacy(store, world, sandbox):
    seed_tenant(store, world, grant=False)
    store.connections.store_legacy("acme", world.legacy_token(COMPANY))


def _rate_limited(store, world, sandbox):
    tokens = seed_tenant(store, world)
    world.rate_limit = (1, 60)   # the export itself used the tenant's whole budget a moment ago
    used = httpx.get(f"{sandbox.api_url}/companyinformation",
                     headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert used.status_code == 200


def _maintenance(store, world, sandbox):
    seed_tenant(store, world)
    world.outage = "html503"


SCENARIOS = [
    Scenario("healthy", Cause.HEALTHY, _healthy, None, ()),
    Scenario("expired_access_token", Cause.TOKEN_REFRESHED, _expired, None, (), token_calls=1),
    Scenario("nothing_stored", Cause.CREDENTIALS_MISSING, _nothing_stored, "credentials", ("no Fortnox credentials",)),
    Scenario("garbled_token", Cause.CREDENTIALS_MISSING, _garbled, "credentials", ("not a Fortnox token",)),
    Scenario("wrong_client_secret", Cause.CLIENT_CREDENTIALS_INVALID, _expired, "client_credentials",
             ("HTTP 401", "invalid_client", "every tenant"), env={"FORTNOX_CLIENT_SECRET": "rotated-in-the-portal"},
             token_calls=1),
    Scenario("integration_removed", Cause.REACTIVATION_REQUIRED, _integration_removed, "refresh",
             ("invalid_grant", "Invalid refresh token"), token_calls=1),
    Scenario("refresh_token_already_used", Cause.REACTIVATION_REQUIRED, _refresh_token_used_elsewhere, "refresh",
             ("Invalid refresh token",), token_calls=1),
    Scenario("scope_not_granted", Cause.SCOPES_MISSING, _scope_not_granted, "scope:customer",
             ("'customer'", "not granted")),
    Scenario("scope_not_in_FORTNOX_SCOPES", Cause.SCOPE_NOT_REQUESTABLE, _scope_not_granted, "scope:customer",
             ("'customer'", "FORTNOX_SCOPES"), env={"FORTNOX_SCOPES": "companyinformation invoice profile"}),
    Scenario("licence_missing", Cause.LICENSE_MISSING, _no_licence, "scope:invoice",
             ("code 2001101", "ingen aktiv licens"), token_calls=1),
    Scenario("user_lacks_rights", Cause.USER_PERMISSIONS, _bookkeeper_only, "scope:invoice",
             ("code 2001339", "Saknar behörighet")),
    Scenario("legacy_token", Cause.LEGACY_AUTH, _legacy, "credentials", ("legacy Access-Token",)),
    Scenario("rate_limited", Cause.RATE_LIMITED, _rate_limited, "probe", ("HTTP 429",)),
    Scenario("fortnox_maintenance", Cause.FORTNOX_UNAVAILABLE, _maintenance, "probe",
             ("HTTP 503", "Service Unavailable")),
    Scenario("client_id_of_another_app", Cause.BOT_MISCONFIGURED, _healthy, "token_client",
             ("FORTNOX_CLIENT_ID", "sandbox-client"), env={"FORTNOX_CLIENT_ID": "another-app"}),
    Scenario("redirect_uri_missing", Cause.BOT_MISCONFIGURED, _healthy, "config:FORTNOX_REDIRECT_URI",
             ("FORTNOX_REDIRECT_URI is not set",), env={"FORTNOX_REDIRECT_URI": ""}),
    Scenario("encryption_key_decrypts_nothing", Cause.BOT_MISCONFIGURED, _healthy, "config:ENCRYPTION_KEY",
             ("ENCRYPTION_KEY decrypts no stored token",), env={"ENCRYPTION_KEY": Fernet.generate_key().decode()}),
    Scenario("unregistered_tenant", Cause.TENANT_UNKNOWN, _healthy, "tenant", ("'ghost' is not registered",),
             tenant="ghost"),
]


def test_every_cause_of_the_contract_has_a_scenario():
    assert {s.cause for s in SCENARIOS} == set(Cause)


@pytest.fixture
def store(sqlite_store):
    """These tests run on SQLite only (the CLI in a subprocess reads the same file)."""
    return sqlite_store


def _refreshes(world) -> int:
    return sum(1 for c in world.token_calls if c["grant_type"] == "refresh_token")


def _assert_proves(out: dict, s: Scenario) -> None:
    assert out["tenant"] == s.tenant
    assert out["cause"] == str(s.cause), out
    statuses = {c["status"] for c in out["checks"]}
    assert statuses <= {"pass", "fail", "warn", "skip"}
    failing = {c["id"]: c["detail"] for c in out["checks"] if c["status"] == "fail"}
    if s.check is None:
        assert failing == {}
        return
    assert s.check in failing, out["checks"]
    for text in s.evidence:
        assert text in failing[s.check], failing[s.check]


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_cli_json_names_the_cause_and_its_evidence(s, store, world, sandbox, sqlite_url, monkeypatch, capsys):
    s.setup(store, world, sandbox)
    run = call_main(monkeypatch, capsys, "diagnose", s.tenant, "--json",
                    env=cli_env(sandbox, sqlite_url, **s.env))
    assert run.code == 0, run.err
    out = run.json()
    _assert_proves(out, s)
    assert set(out) >= {"tenant", "cause", "summary", "checks", "steps"}
    assert out["summary"]
    assert _refreshes(world) == s.token_calls


# Slower, so a few: the real script in its own process, stdout nothing but the JSON.
SUBPROCESS = ("integration_removed", "licence_missing", "unregistered_tenant")


@pytest.mark.parametrize("name", SUBPROCESS)
def test_cli_subprocess_prints_only_the_json(name, store, world, sandbox, sqlite_url):
    s = next(x for x in SCENARIOS if x.name == name)
    s.setup(store, world, sandbox)
    run = run_cli("diagnose", s.tenant, "--json", env=cli_env(sandbox, sqlite_url, **s.env))
    assert run.code == 0, run.err
    assert len(run.out.strip().splitlines()) == 1
    _assert_proves(run.json(), s)
    assert "Traceback" not in run.err


def test_licence_missing_offers_no_consent(store, world, sandbox, sqlite_url):
    """F-D4 in short: the refresh works, the licence is what is missing; a consent link cannot help."""
    _no_licence(store, world, sandbox)
    d = diagnose(store, settings_for(sandbox, sqlite_url))
    assert d.cause == Cause.LICENSE_MISSING
    assert d.consent_can_fix is False and d.affects_all_tenants is False
    assert [c["ok"] for c in world.token_calls] == [True]


def test_client_credentials_invalid_is_app_wide_and_offers_no_consent(store, world, sandbox, sqlite_url):
    _expired(store, world, sandbox)
    d = diagnose(store, settings_for(sandbox, sqlite_url, FORTNOX_CLIENT_SECRET="wrong"))
    assert d.cause == Cause.CLIENT_CREDENTIALS_INVALID
    assert d.affects_all_tenants is True and d.consent_can_fix is False


def test_scopes_missing_consent_asks_for_the_missing_scope(store, world, sandbox, sqlite_url):
    _scope_not_granted(store, world, sandbox)
    d = diagnose(store, settings_for(sandbox, sqlite_url))
    assert d.cause == Cause.SCOPES_MISSING and d.consent_can_fix is True
    assert {"customer", "invoice", "companyinformation"} <= d.consent_scopes
    assert "(customer)" in d.summary


def test_scope_not_requestable_is_not_fixed_by_consent(store, world, sandbox, sqlite_url):
    _scope_not_granted(store, world, sandbox)
    d = diagnose(store, settings_for(sandbox, sqlite_url, FORTNOX_SCOPES="companyinformation invoice profile"))
    assert d.cause == Cause.SCOPE_NOT_REQUESTABLE and d.consent_can_fix is False
    assert "customer" not in d.consent_scopes


def test_rate_limited_says_when_to_look_again(store, world, sandbox, sqlite_url):
    _rate_limited(store, world, sandbox)
    d = diagnose(store, settings_for(sandbox, sqlite_url))
    assert d.cause == Cause.RATE_LIMITED
    assert 55 <= d.retry_after <= 60
    assert d.to_json()["retry_after"] == d.retry_after
    assert [c.status for c in d.checks if c.id.startswith("scope:") and c.id != "scope:companyinformation"] \
        == ["skip", "skip"]   # the 429 kept the other checks from running


def test_user_permissions_names_the_non_admin_user(store, world, sandbox, sqlite_url):
    _bookkeeper_only(store, world, sandbox)
    d = diagnose(store, settings_for(sandbox, sqlite_url))
    checks = {c.id: c for c in d.checks}
    assert d.cause == Cause.USER_PERMISSIONS and d.consent_can_fix is True
    assert checks["sysadmin"].status == "fail" and "not a system administrator" in checks["sysadmin"].detail
    assert checks["scope:customer"].status == "pass"


def test_a_second_diagnosis_of_a_dead_grant_sends_nothing(store, world, sandbox, sqlite_url):
    _integration_removed(store, world, sandbox)
    settings = settings_for(sandbox, sqlite_url)
    assert diagnose(store, settings).cause == Cause.REACTIVATION_REQUIRED
    again = diagnose(store, settings)
    assert again.cause == Cause.REACTIVATION_REQUIRED
    assert "Invalid refresh token" in again.summary
    assert _refreshes(world) == 1          # the dead refresh token is never sent again
    assert world.api_calls == []


def _service_account(store, world, *, expired: bool) -> None:
    seed_tenant(store, world, grant=False, service_account=True)
    tokens = world.issue_grant(COMPANY, 7, {"companyinformation", "invoice", "customer"}, service=True)
    when = datetime.now(timezone.utc) + (timedelta(seconds=-60) if expired else timedelta(hours=1))
    store.connections.store_tokens("acme", access_token=tokens["access_token"], refresh_token=None, expires_at=when,
                                   scopes=(), mode="service", company_id=str(COMPANY))


def test_service_account_renews_with_client_credentials(store, world, sandbox, sqlite_url):
    _service_account(store, world, expired=True)
    d = diagnose(store, settings_for(sandbox, sqlite_url))
    assert d.cause == Cause.TOKEN_REFRESHED
    assert [(c["grant_type"], c["tenant_id"], c["status"]) for c in world.token_calls] == \
        [("client_credentials", COMPANY, 200)]


def test_service_account_consent_removed_is_reactivation(store, world, sandbox, sqlite_url):
    _service_account(store, world, expired=True)
    world.remove_integration(COMPANY)
    d = diagnose(store, settings_for(sandbox, sqlite_url))
    assert d.cause == Cause.REACTIVATION_REQUIRED and d.consent_can_fix
    assert "unauthorized_client" in next(c.detail for c in d.checks if c.id == "refresh")
    assert store.connections.load("acme").state == "active"   # client_credentials can be asked again any time
