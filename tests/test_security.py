"""Security promises as tests, over loopback against the real bot.

Signatures and their replay window (Slack; the export webhook's F-S7 cases live in test_webhook_ingest.py),
constant-time comparison on every verify path, single-use OAuth states across replicas, no secret in any
log, Slack call or database, bodies refused before they are read whole, no internals shown to users.
"""
from __future__ import annotations

import base64
import hmac
import json
import logging
import shutil
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import String, Text, select
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from bot.slack_standin import requests as slack_requests
from tests.conftest import ENCRYPTION_KEY
from tests.support.consent import callback_params, consent_in_fortnox, thread_links
from tests.support.replicas import (SCOPES_SHORT, message_with_button, pg_store, replicas,  # noqa: F401
                                    seed_expired, wait_idle, wait_until)
from tests.support.seed import (ADMIN, CLIENT_SECRET, OPERATOR, SIGNING_SECRET, WEBHOOK_SECRET, export_event,
                                post_event, seed_tenant, signed_webhook)
from tests.support.slack import click, command


def _slash(server, slack, *, timestamp=None, tamper=None) -> tuple[httpx.Response, str, dict]:
    """`/fortnox status`, signed as Slack signs it (then tampered with); (response, response_url key, headers)."""
    key = f"sec-{time.monotonic_ns()}"
    body, headers = slack_requests.slash_command(SIGNING_SECRET, text="status", user_id=OPERATOR,
                                                 response_url=slack.response_url(key), timestamp=timestamp)
    if tamper:
        tamper(headers)
    return httpx.post(f"{server.url}/slack/events", content=body, headers=headers, timeout=10), key, headers


def _last_char_changed(h):
    sig = h["X-Slack-Signature"]
    h["X-Slack-Signature"] = sig[:-1] + ("0" if sig[-1] != "0" else "1")


SLACK_REFUSED = {
    "signature_last_char": dict(tamper=_last_char_changed),
    "signature_other_length": dict(tamper=lambda h: h.update({"X-Slack-Signature": h["X-Slack-Signature"] + "00"})),
    "signed_with_other_secret": dict(tamper=lambda h: h.update(
        {"X-Slack-Signature": slack_requests.sign("other-secret", b"text=status")["X-Slack-Signature"]})),
    "no_signature": dict(tamper=lambda h: h.pop("X-Slack-Signature")),
    "no_timestamp": dict(tamper=lambda h: h.pop("X-Slack-Request-Timestamp")),
    "timestamp_not_a_number": dict(tamper=lambda h: h.update({"X-Slack-Request-Timestamp": "yesterday"})),
    "301_s_old": dict(timestamp=lambda: int(time.time()) - 301),
    # whole seconds: +301 can land inside the window when the request itself takes a moment
    "302_s_ahead": dict(timestamp=lambda: int(time.time()) + 302),
    "one_day_ahead": dict(timestamp=lambda: int(time.time()) + 86400),
}


def test_slack_requests_with_bad_or_stale_signatures_are_refused(server, slack):
    for case, spec in SLACK_REFUSED.items():
        ts = spec["timestamp"]() if "timestamp" in spec else None
        response, key, _ = _slash(server, slack, timestamp=ts, tamper=spec.get("tamper"))
        assert response.status_code == 401, (case, response.status_code, response.text)
        assert "Traceback" not in response.text
    assert slack.calls == []            # nothing was answered, posted or queued for any of them
    assert server.bot.store.jobs.pending() == []


def test_slack_signature_window_is_symmetric_and_just_inside_it_passes(server, slack):
    # 298, not 299: the header holds whole seconds and the request itself takes a moment.
    for skew in (-298, 298):
        response, _, _ = _slash(server, slack, timestamp=int(time.time()) + skew)
        assert response.status_code == 200 and "open incidents" in response.json()["text"].lower(), skew


def test_every_verify_path_compares_in_constant_time(server, store, world, slack, monkeypatch):
    """Slack signatures, webhook signatures and OAuth states all go through hmac.compare_digest."""
    compared: list[tuple] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    response, _, headers = _slash(server, slack)
    assert response.status_code == 200
    assert any(headers["X-Slack-Signature"] in (a, b) for a, b in compared)

    compared.clear()
    raw, headers = signed_webhook(export_event("ghost"))
    assert httpx.post(f"{server.url}/webhooks/export-failure", content=raw, headers=headers).status_code == 202
    sent = headers["webhook-signature"]   # "v1,<base64>": compared as text, bytes or decoded, all constant-time
    forms = {sent, sent.encode(), base64.b64decode(sent.split(",", 1)[1])}
    assert any(a in forms or b in forms for a, b in compared)

    compared.clear()
    seed_tenant(store, world, "acme", company=801, grant=False)
    state = store.consents.issue(tenant_id="acme", scopes={"companyinformation"}, ttl=timedelta(hours=1))
    assert not store.consents.consume(state, tenant_id="globex").ok
    assert len(compared) >= 2   # the state's hash, then the tenant it is bound to


def test_consent_state_is_single_use_across_replicas(replicas, pg_store, world, slack):
    seed_tenant(pg_store, world, "acme", company=802, user=7, channel="C0ACME", scopes=SCOPES_SHORT)
    a, b = replicas.start(2)
    assert post_event(a.url, export_event("acme")).status_code == 202
    wait_idle(pg_store)
    inc = pg_store.incidents.live_for_tenant("acme")
    alert = slack.messages[(inc.channel, inc.message_ts)]
    click(a, slack, alert, "reactivation.request", user=OPERATOR)
    alert = wait_until(lambda: message_with_button(slack, inc, "reactivation.approve"), what="the approve button")
    _, key = click(b, slack, alert, "reactivation.approve", user=ADMIN)
    (link,) = wait_until(lambda: thread_links(slack, inc.channel, inc.message_ts), what="the link")
    params = callback_params(consent_in_fortnox(link, company=802, user=7))

    forged = {**params, "state": params["state"][:-2] + "xx"}
    assert httpx.get(f"{b.url}/oauth/fortnox/callback", params=forged).status_code == 400
    assert world.token_calls == []                              # a forged state never reaches Fortnox
    first = httpx.get(f"{a.url}/oauth/fortnox/callback", params=params)
    assert first.status_code == 200, first.text
    calls = len(world.token_calls)
    again = httpx.get(f"{b.url}/oauth/fortnox/callback", params=params)   # the same state, other replica
    assert again.status_code == 400
    assert len(world.token_calls) == calls
    assert "Traceback" not in first.text + again.text


# --- no secret anywhere -----------------------------------------------------------------------

def _database_bytes(url: str, store) -> bytes:
    """Everything the store holds: SQLite's files (WAL included), or a pg_dump (else every text column)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database)
        return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))
    if shutil.which("pg_dump"):
        plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        dump = subprocess.run(["pg_dump", "--data-only", plain], capture_output=True, timeout=60)
        if dump.returncode == 0:
            assert b"COPY public.connection" in dump.stdout
            return dump.stdout
    with store.db.engine.connect() as conn:
        return "\n".join(str(v) for table in SQLModel.metadata.sorted_tables
                         for cols in [[c for c in table.columns if isinstance(c.type, (String, Text))]] if cols
                         for row in conn.execute(select(*cols)) for v in row).encode()


def _jwt_parts(token: str) -> set[str]:
    return {token, token.rsplit(".", 1)[-1]} if token.count(".") == 2 else {token}


def test_no_token_or_secret_in_logs_slack_or_the_database(server, store, world, slack, sandbox, db_url, caplog):
    caplog.set_level(logging.DEBUG)
    first = seed_expired(store, world, "acme", company=804, user=7, channel="C0ACME", scopes=SCOPES_SHORT)
    # Refusals are logged too: a request signed with a wrong secret, a webhook with a bad signature.
    _slash(server, slack, tamper=_last_char_changed)
    raw, headers = signed_webhook(export_event("acme"), secret="whsec_" + base64.b64encode(b"x" * 24).decode())
    assert httpx.post(f"{server.url}/webhooks/export-failure", content=raw, headers=headers).status_code == 401

    # The whole loop: refresh (a new pair), alert, request, approval, consent (another pair), verification.
    assert post_event(server.url, export_event("acme")).status_code == 202
    server.drain()
    refreshed = store.connections.load("acme")
    inc = store.incidents.live_for_tenant("acme")
    alert = slack.messages[(inc.channel, inc.message_ts)]
    click(server, slack, alert, "reactivation.request", user=OPERATOR)
    alert = wait_until(lambda: message_with_button(slack, inc, "reactivation.approve"), what="the approve button")
    click(server, slack, alert, "reactivation.approve", user=ADMIN)
    (link,) = wait_until(lambda: thread_links(slack, inc.channel, inc.message_ts), what="the consent link")
    params = callback_params(consent_in_fortnox(link, company=804, user=7))
    assert httpx.get(f"{server.url}/oauth/fortnox/callback", params=params).status_code == 200
    server.drain()
    consented = store.connections.load("acme")
    assert store.incidents.get(inc.id).status == "resolved"
    assert len({first["refresh_token"], refreshed.refresh_token, consented.refresh_token}) == 3

    secrets = {CLIENT_SECRET, SIGNING_SECRET, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_"),
               ENCRYPTION_KEY, "xoxb-test", params["code"]}
    for access, refresh in ((first["access_token"], first["refresh_token"]),
                            (refreshed.access_token, refreshed.refresh_token),
                            (consented.access_token, consented.refresh_token)):
        secrets |= _jwt_parts(access) | {refresh}

    # The bot's records only: the test's own browser (main thread) and the fake Fortnox and Slack log what
    # they like. caplog.text is not used: it is every thread's.
    outside = ("MainThread", "fortnox-sandbox", "slack-standin")
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if not r.threadName.startswith(outside))
    assert "fortnox token grant=refresh_token ok" in logs            # DEBUG logging was really on
    slack_seen = json.dumps([c.args for c in slack.calls], ensure_ascii=False)
    database = _database_bytes(db_url, store)
    assert b"acme" in database
    for secret in secrets:
        assert secret not in logs, "a secret is in the logs"
        assert secret not in slack_seen, "a secret is in a Slack call"
        assert secret.encode() not in database, "a secret is in the database in plaintext"


# --- bodies, internals --------------------------------------------------------------------------

def _trickle(url: str, path: str, content_type: str, timeout: float = 3.0) -> str:
    """Headers claiming 5 MB, then a few bytes and silence: the status line the server answers with."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                      f"Content-Length: {5 * 1024 * 1024}\r\n\r\n").encode() + b"x" * 1024)
        started = time.monotonic()
        answer = sock.recv(4096).decode("latin-1")
    assert time.monotonic() - started < timeout
    return answer.split("\r\n", 1)[0]


def test_oversized_bodies_are_refused_without_waiting_for_them(server, slack):
    for path, content_type in (("/webhooks/export-failure", "application/json"),
                               ("/slack/events", "application/x-www-form-urlencoded")):
        assert _trickle(server.url, path, content_type).startswith("HTTP/1.1 413"), path

    def chunks():   # no Content-Length at all: the limit must hold while streaming
        for _ in range(64):
            yield b"text=" + b"x" * 65536

    response = httpx.post(f"{server.url}/slack/events", content=chunks(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert response.status_code == 413
    assert slack.calls == []


LEAKY = f"connection to postgresql://bot:{CLIENT_SECRET}@db/bot failed; token {SIGNING_SECRET}"


class Leak(RuntimeError):
    pass


def test_internal_errors_show_users_no_details_or_secrets(server, store, slack, monkeypatch):
    def boom(*args, **kwargs):
        raise Leak(LEAKY)

    monkeypatch.setattr(server.bot.store.incidents, "live", boom)
    monkeypatch.setattr(server.bot.store.incidents, "ingest", boom)
    monkeypatch.setattr(server.bot.store.incidents, "ingest_many", boom)
    response, key = command(server, slack, "status")
    assert response.status_code == 200
    text = response.json()["text"]
    assert "went wrong" in text
    raw, headers = signed_webhook(export_event("acme"))
    hook = httpx.post(f"{server.url}/webhooks/export-failure", content=raw, headers=headers, timeout=10)
    for shown in (text, hook.text):
        assert CLIENT_SECRET not in shown and SIGNING_SECRET not in shown
        assert "Leak" not in shown and "Traceback" not in shown and "postgresql://" not in shown
    assert hook.status_code in (500, 503) and hook.json()["error"]
