"""Bad inputs to `fortnox-bot diagnose`: each gets a clear cause or one clear line, never a traceback,
and no stored token changes."""
from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import update

from bot.diagnosis.model import Cause
from storage import Store, TokenCipher
from storage.models import Connection
from storage.types import utcnow
from tests.support.diag import call_main, cli_env, diagnose, run_cli, settings_for
from tests.support.seed import seed_tenant

COMPANY = 1234567


@pytest.fixture
def store(sqlite_store):
    """These tests run on SQLite only (the CLI in a subprocess reads the same file)."""
    return sqlite_store


def _at_rest(store) -> dict:
    with store.db.session() as s:
        return {r.tenant_id: (r.access_token_enc, r.refresh_token_enc, r.legacy_token_enc, r.generation, r.state)
                for r in s.query(Connection).all()}


def _clean(run) -> None:
    assert "Traceback" not in run.out and "Traceback" not in run.err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _corrupt(store, tenant: str, value: str) -> None:
    with store.db.engine.begin() as conn:
        conn.execute(update(Connection).where(Connection.tenant_id == tenant).values(access_token_enc=value))


def test_unknown_tenant_is_a_cause_not_an_error(store, world, sandbox, sqlite_url):
    seed_tenant(store, world)
    before = _at_rest(store)
    run = run_cli("diagnose", "no-such-tenant", "--json", env=cli_env(sandbox, sqlite_url))
    _clean(run)
    assert run.code == 0
    out = run.json()
    assert out["cause"] == "tenant_unknown" and out["tenant"] == "no-such-tenant"
    assert "fortnox-bot tenant add no-such-tenant" in out["steps"][0]["text"]
    assert _at_rest(store) == before and world.api_calls == [] and world.token_calls == []


@pytest.mark.parametrize("value", ["not-fernet-at-all", "gAAAAAB" + "x" * 10])
@pytest.mark.parametrize("others", [True, False], ids=["with_other_tenants", "alone"])
def test_corrupted_ciphertext_of_one_tenant_is_credentials_missing(value, others, store, world, sandbox, sqlite_url,
                                                                  monkeypatch, capsys):
    seed_tenant(store, world)
    if others:
        seed_tenant(store, world, "beta", company=7654321, name="Beta AB")
    _corrupt(store, "acme", value)
    before = _at_rest(store)

    run = call_main(monkeypatch, capsys, "diagnose", "acme", "--json", env=cli_env(sandbox, sqlite_url))

    _clean(run)
    assert run.code == 0
    out = run.json()
    assert out["cause"] == "credentials_missing"
    detail = next(c["detail"] for c in out["checks"] if c["id"] == "credentials")
    assert "corrupted" in detail
    assert _at_rest(store) == before and world.token_calls == []
    if others:
        beta = call_main(monkeypatch, capsys, "diagnose", "beta", "--json", env=cli_env(sandbox, sqlite_url)).json()
        assert beta["cause"] == "healthy"


def test_wrong_encryption_key_is_bot_misconfigured_for_every_tenant(store, world, sandbox, sqlite_url):
    seed_tenant(store, world)
    seed_tenant(store, world, "beta", company=7654321, name="Beta AB")
    before = _at_rest(store)
    env = cli_env(sandbox, sqlite_url, ENCRYPTION_KEY=Fernet.generate_key().decode())

    run = run_cli("diagnose", "--all", "--json", env=env)

    _clean(run)
    assert run.code == 0
    lines = run.json_lines()
    assert sorted(o["tenant"] for o in lines) == ["acme", "beta"]
    for out in lines:
        assert out["cause"] == "bot_misconfigured"
        failing = {c["id"]: c["detail"] for c in out["checks"] if c["status"] == "fail"}
        assert "ENCRYPTION_KEY" in failing["config:ENCRYPTION_KEY"]
        assert "ENCRYPTION_KEY" in out["summary"]
    assert "Every tenant fails the same way (bot_misconfigured)" in run.err
    assert _at_rest(store) == before and world.token_calls == [] and world.api_calls == []


@pytest.mark.parametrize("expired", [False, True], ids=["probe", "refresh"])
def test_unreachable_fortnox_is_fortnox_unavailable(expired, store, world, sandbox, sqlite_url, monkeypatch, capsys):
    seed_tenant(store, world, access_expires_in=30 if expired else 3600)
    before = _at_rest(store)
    port = _closed_port()
    env = cli_env(sandbox, sqlite_url, FORTNOX_API_URL=f"http://127.0.0.1:{port}/3",
                  FORTNOX_AUTH_URL=f"http://127.0.0.1:{port}/oauth-v1")

    run = call_main(monkeypatch, capsys, "diagnose", "acme", "--json", env=env)

    _clean(run)
    assert run.code == 0
    out = run.json()
    assert out["cause"] == "fortnox_unavailable" and out["retry_after"] == 60
    check = next(c for c in out["checks"] if c["id"] == ("refresh" if expired else "probe"))
    assert check["status"] == "fail" and "no answer (connect_error)" in check["detail"]
    assert _at_rest(store) == before


# Garbage Fortnox could send on the company probe, and the clear cause each must give.
GARBAGE = {
    "html_with_200": (200, "<html><body>Logga in</body></html>", "fortnox_unavailable", "response was not JSON"),
    "teapot_text": (418, "I'm a teapot", "fortnox_unavailable", "HTTP 418"),
    "envelope_is_a_string": (400, {"ErrorInformation": "oops"}, "fortnox_unavailable", "HTTP 400"),
    "code_not_a_number": (500, {"ErrorInformation": {"code": "abc", "message": None}}, "fortnox_unavailable",
                          "HTTP 500"),
    "deeply_nested": (502, {"a": [[[[{"b": "c"}]]]] * 50}, "fortnox_unavailable", "HTTP 502"),
    "json_list": (504, [1, 2, 3], "fortnox_unavailable", "HTTP 504"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_bodies_give_clear_causes(name, store, world, sandbox, sqlite_url, monkeypatch, capsys):
    status, body, cause, evidence = GARBAGE[name]
    seed_tenant(store, world)
    world.force(COMPANY, "/companyinformation", status, body)
    before = _at_rest(store)

    run = call_main(monkeypatch, capsys, "diagnose", "acme", "--json", env=cli_env(sandbox, sqlite_url))

    _clean(run)
    assert run.code == 0
    out = run.json()
    assert out["cause"] == cause
    probe = next(c for c in out["checks"] if c["id"] == "probe")
    assert probe["status"] == "fail" and evidence in probe["detail"]
    assert _at_rest(store) == before and world.token_calls == []


def test_a_token_echoed_by_fortnox_is_redacted(store, world, sandbox, sqlite_url, monkeypatch, capsys):
    tokens = seed_tenant(store, world)
    world.force(COMPANY, "/companyinformation", 500, {"message": f"bad bearer {tokens['access_token']}"})
    run = call_main(monkeypatch, capsys, "diagnose", "acme", "--json", env=cli_env(sandbox, sqlite_url))
    assert run.json()["cause"] == "fortnox_unavailable"
    assert tokens["access_token"] not in run.out + run.err
    assert "redacted" in run.out


@pytest.mark.parametrize("database_url", ["sqlite:////nonexistent-dir/for/fortnox-bot.db",
                                          "postgresql://bot:secret-pw@127.0.0.1:{port}/bot"])
def test_unreachable_store_exits_1_with_one_line(database_url, sandbox, monkeypatch, capsys):
    url = database_url.format(port=_closed_port())
    run = call_main(monkeypatch, capsys, "diagnose", "acme", "--json", env=cli_env(sandbox, url))
    _clean(run)
    assert run.code == 1
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fortnox-bot: the store at ") and "cannot be used" in lines[0]
    assert "secret-pw" not in run.err


@pytest.mark.parametrize("args,says", [
    (("diagnose",), "give a TENANT or --all"),
    (("diagnose", "acme", "--all"), "give a TENANT or --all"),
    (("diagnose", "   "), "give a TENANT or --all"),
    (("diagnose", "--all", "--concurrency", "0"), "--concurrency must be at least 1"),
    (("diagnose", "acme", "--bogus"), "unrecognized arguments: --bogus"),
])
def test_usage_errors_exit_2(args, says, store, sandbox, sqlite_url, monkeypatch, capsys):
    run = call_main(monkeypatch, capsys, *args, env=cli_env(sandbox, sqlite_url))
    _clean(run)
    assert run.code == 2 and run.out == ""
    assert says in run.err


@pytest.mark.parametrize("value,says", [
    ("", "fortnox-bot: setting ENCRYPTION_KEY: is required but not set"),
    ("not-a-fernet-key", "fortnox-bot: setting ENCRYPTION_KEY: key 1 is not a valid Fernet key"),
])
def test_missing_or_malformed_key_is_one_line_exit_2(value, says, sandbox, sqlite_url, monkeypatch, capsys):
    run = call_main(monkeypatch, capsys, "diagnose", "acme", "--json",
                    env=cli_env(sandbox, sqlite_url, ENCRYPTION_KEY=value))
    _clean(run)
    assert run.code == 2 and run.out == ""
    assert run.err.strip().splitlines() == [run.err.strip()] and run.err.startswith(says)
    assert "not-a-fernet-key" not in run.err   # a secret is never echoed


def test_key_rotation_reads_old_rows_and_writes_with_the_new_key(sqlite_url, world, sandbox):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = Store(sqlite_url, TokenCipher(old))
    before.upgrade()
    seed_tenant(before, world)
    with before.db.engine.begin() as conn:   # the access token is due for a refresh
        conn.execute(update(Connection).values(expires_at=utcnow() - timedelta(minutes=1)))
    before.close()

    rotated = Store(sqlite_url, TokenCipher(f"{new},{old}"))
    d = diagnose(rotated, settings_for(sandbox, sqlite_url, ENCRYPTION_KEY=f"{new},{old}"))
    assert d.cause == Cause.TOKEN_REFRESHED
    row = _at_rest(rotated)["acme"]
    for ciphertext in row[:2]:
        assert Fernet(new).decrypt(ciphertext.encode())
        with pytest.raises(InvalidToken):
            Fernet(old).decrypt(ciphertext.encode())
    rotated.close()

    only_new = Store(sqlite_url, TokenCipher(new))     # the old key may go once every row was rewritten
    assert diagnose(only_new, settings_for(sandbox, sqlite_url, ENCRYPTION_KEY=new)).cause == Cause.HEALTHY
    only_old = Store(sqlite_url, TokenCipher(old))
    d = diagnose(only_old, settings_for(sandbox, sqlite_url, ENCRYPTION_KEY=old))
    assert d.cause == Cause.BOT_MISCONFIGURED and "ENCRYPTION_KEY" in d.summary
    only_new.close()
    only_old.close()


def test_diagnosis_history_is_saved_without_secrets(store, world, sandbox, sqlite_url):
    tokens = seed_tenant(store, world, access_expires_in=30)
    d = diagnose(store, settings_for(sandbox, sqlite_url))
    record = store.diagnoses.latest("acme")
    assert record.id == d.record_id and record.cause == "token_refreshed" and record.trigger == "cli"
    saved = json.dumps([record.summary, record.checks, record.steps])
    assert tokens["access_token"] not in saved and tokens["refresh_token"] not in saved
