"""No plaintext token anywhere: not in the store's files (SQLite) or dump (PostgreSQL), not in any log line,
not in the CLI's output, at DEBUG, across refreshes that rotate the pair."""
from __future__ import annotations

import logging
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import String, Text, select, update
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from bot.diagnosis.model import Cause
from storage import Store
from storage.models import Connection
from storage.types import utcnow
from tests.support.diag import cli_env, diagnose, run_cli, settings_for
from tests.support.seed import seed_tenant


def _due_for_refresh(store) -> None:
    with store.db.engine.begin() as conn:
        conn.execute(update(Connection).values(expires_at=utcnow() - timedelta(minutes=1)))


def _secrets(*pairs) -> set[str]:
    """Each token, and the signature of each JWT on its own (a log line could carry half a token)."""
    out = set()
    for access, refresh in pairs:
        out |= {access, refresh, access.rsplit(".", 1)[-1]}
    return out


def _refresh_twice_and_collect(store, world, sandbox, db_url, caplog) -> tuple[set[str], str]:
    """Two refreshes (in-process at DEBUG, then the CLI with -vv); returns every token seen and all log text."""
    first = seed_tenant(store, world)
    caplog.set_level(logging.DEBUG)
    _due_for_refresh(store)
    assert diagnose(store, settings_for(sandbox, db_url)).cause == Cause.TOKEN_REFRESHED
    second = store.connections.load("acme")

    _due_for_refresh(store)
    run = run_cli("-vv", "diagnose", "acme", "--json", env=cli_env(sandbox, db_url))
    assert run.code == 0, run.err
    assert run.json()["cause"] == "token_refreshed"
    assert "DEBUG bot.fortnox.client: fortnox token grant=refresh_token ok" in run.err   # the log was really on
    third = store.connections.load("acme")

    assert len({first["refresh_token"], second.refresh_token, third.refresh_token}) == 3
    tokens = _secrets((first["access_token"], first["refresh_token"]),
                      (second.access_token, second.refresh_token),
                      (third.access_token, third.refresh_token))
    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records) + run.err + run.out
    return tokens, logs


def _assert_absent(tokens: set[str], haystack: str | bytes, where: str) -> None:
    for token in tokens:
        needle = token.encode() if isinstance(haystack, bytes) else token
        assert needle not in haystack, f"a plaintext token is in {where}"


def test_no_plaintext_tokens_in_sqlite_files_or_logs(sqlite_url, cipher, world, sandbox, caplog):
    store = Store(sqlite_url, cipher)
    store.upgrade()
    tokens, logs = _refresh_twice_and_collect(store, world, sandbox, sqlite_url, caplog)
    store.close()

    _assert_absent(tokens, logs, "the logs")
    path = Path(make_url(sqlite_url).database)
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]   # the db, its WAL and shm
    assert path in files
    for f in files:
        _assert_absent(tokens, f.read_bytes(), f.name)


def _pg_text(url: str, store) -> str:
    """pg_dump of the database when the tool is installed, else every text column SELECTed."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump:
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        dump = subprocess.run([pg_dump, "--data-only", plain], capture_output=True, text=True, timeout=60)
        if dump.returncode == 0:
            assert "COPY public.connection" in dump.stdout
            return dump.stdout
    chunks = []
    with store.db.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, (String, Text))]
            if cols:
                chunks += [str(v) for row in conn.execute(select(*cols)) for v in row]
    return "\n".join(chunks)


@pytest.mark.postgres
def test_no_plaintext_tokens_in_postgres_or_logs(postgres_url, cipher, world, sandbox, caplog):
    store = Store(postgres_url, cipher)
    store.upgrade()
    try:
        tokens, logs = _refresh_twice_and_collect(store, world, sandbox, postgres_url, caplog)
        _assert_absent(tokens, logs, "the logs")
        dumped = _pg_text(postgres_url, store)
        assert store.connections.load("acme").access_token is not None
        _assert_absent(tokens, dumped, "the PostgreSQL database")
    finally:
        store.close()
