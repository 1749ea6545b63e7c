"""`POST /webhooks/export-failure` over loopback: signatures, bodies, duplicates and the incident lifecycle."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.support.db import SQLITE_ONLY
from tests.support.seed import (ALERT_CHANNEL, TENANT_CHANNEL, export_event, post_event, seed_tenant,
                                signed_webhook)
from tests.support.slack import message_text, only_message

URL = "/webhooks/export-failure"
REPEAT_BUDGET = 0.5   # F-S5 asks for < 100 ms (typically a few ms here); room for a loaded CI box


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _post_raw(server, body: bytes, headers: dict) -> httpx.Response:
    return httpx.post(server.url + URL, content=body, headers=headers, timeout=10)


def _nothing_stored(store, slack) -> None:
    assert store.incidents.all() == []
    assert store.jobs.pending() == []
    assert store.jobs.counts() == {}
    assert slack.calls == []


def _refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.webhooks.export"]


# --- F-S5 --------------------------------------------------------------------------------------------------


def test_F_S5_same_event_three_times_while_the_first_is_handled(server, store, world, slack):
    seed_tenant(store, world, "acme", company=501, channel=TENANT_CHANNEL)
    world.remove_integration(501)
    world.latency = 0.3   # the first delivery's diagnosis is still running while the repeats arrive
    event = export_event("acme", event_id="evt_fs5")
    start = threading.Barrier(3)
    answers: list[httpx.Response] = []

    def deliver() -> None:
        body, headers = signed_webhook(event)   # each delivery has its own webhook-id: the body id decides
        start.wait()
        answers.append(_post_raw(server, body, headers))

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)

    assert sorted(a.status_code for a in answers) == [202, 202, 202]
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True]
    incident_id = answers[0].json()["incident"]
    assert {a.json()["incident"] for a in answers} == {incident_id}

    # A later repeat, while the diagnosis still runs, answers at once and changes nothing.
    before = time.monotonic()
    again = post_event(server.url, event)
    assert (again.status_code, again.json()) == (202, {"incident": incident_id, "duplicate": True})
    assert time.monotonic() - before < REPEAT_BUDGET

    server.drain()
    (incident,) = store.incidents.all()
    assert incident.id == incident_id and incident.failures == 1
    assert incident.cause == "reactivation_required"
    assert [d.trigger for d in _diagnoses(store, "acme")] == ["webhook"]
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert [a.action for a in store.audit.for_tenant("acme")].count("incident_opened") == 1


def _diagnoses(store, tenant_id):
    from sqlmodel import select

    from storage.models import DiagnosisRecord

    with store.db.session() as s:
        return list(s.exec(select(DiagnosisRecord).where(DiagnosisRecord.tenant_id == tenant_id)))


def test_F_S5_concurrent_inserts_of_one_event_cannot_both_win(store):
    """Straight at the store, many threads at once: the unique event id lets exactly one in."""
    from bot.incidents.service import IncidentService
    from bot.webhooks.export import parse_event

    service = IncidentService(store, diagnoser=None)
    event = parse_event(export_event("acme", event_id="evt_race"))
    start = threading.Barrier(8)
    results = []

    def ingest() -> None:
        start.wait()
        results.append(service.ingest(event))

    threads = [threading.Thread(target=ingest) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert len({r.incident_id for r in results}) == 1
    assert len(store.incidents.all()) == 1
    assert len(store.jobs.pending("diagnose")) == 1


# --- F-S6 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, content_type, status, error", [
    (b"not a json", "application/json", 400, "body is not valid JSON"),
    (b"[1,2]", "application/json", 400, "the body must be a JSON object"),
    (json.dumps(export_event("acme")).encode(), "text/plain", 415, "Content-Type must be application/json"),
], ids=["a-not-json", "b-array", "c-text-plain"])
@SQLITE_ONLY
def test_F_S6_signed_bodies_that_are_not_events(server, store, slack, caplog, body, content_type, status, error):
    caplog.set_level(logging.INFO, logger="bot.webhooks.export")
    raw, headers = signed_webhook(body, content_type=content_type)
    response = _post_raw(server, raw, headers)
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert len(_refusals(caplog)) == 1 and str(status) in _refusals(caplog)[0]
    server.drain()
    _nothing_stored(store, slack)


def _raw_request(server, head: bytes, chunks, *, answer_within: float = 5.0) -> tuple[bytes, int]:
    """Send `head` then body chunks on a raw socket, stopping as soon as the server answers.

    Returns (the answer's bytes, how many body bytes were sent before the answer arrived).
    """
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=answer_within)
    sent = 0
    try:
        sock.sendall(head)
        sock.setblocking(False)
        for chunk in chunks:
            try:
                answer = sock.recv(65536)
                if answer:
                    sock.settimeout(answer_within)
                    return _rest_of_answer(sock, answer), sent
            except BlockingIOError:
                pass
            try:
                sock.sendall(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break   # the server stopped reading
            sent += len(chunk)
        sock.settimeout(answer_within)
        return _rest_of_answer(sock, sock.recv(65536)), sent
    finally:
        sock.close()


def _rest_of_answer(sock, data: bytes) -> bytes:
    """Read until the answer's headers and its Content-Length of body are in."""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
                      b"0"))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return head + b"\r\n\r\n" + body


def _head(server, headers: dict, extra: dict) -> bytes:
    host = server.url.removeprefix("http://")
    lines = [f"POST {URL} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in {**headers, **extra}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


FIVE_MB = 5 * 1024 * 1024


@SQLITE_ONLY
def test_F_S6_five_megabytes_declared_is_refused_before_the_body_is_read(server, store, slack, caplog):
    caplog.set_level(logging.INFO, logger="bot.webhooks.export")
    body = b"{" + b" " * (FIVE_MB - 2) + b"}"
    _, headers = signed_webhook(body)
    head = _head(server, headers, {"Content-Length": str(len(body))})
    # Only the headers and 64 KiB go out; the server answers from Content-Length alone.
    answer, sent = _raw_request(server, head, [body[:65536]])
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"larger than 256 KiB" in answer
    assert sent <= 65536
    assert len(_refusals(caplog)) == 1
    server.drain()
    _nothing_stored(store, slack)


@SQLITE_ONLY
def test_F_S6_five_megabytes_chunked_is_refused_without_reading_it_whole(server, store, slack, caplog):
    caplog.set_level(logging.INFO, logger="bot.webhooks.export")
    _, headers = signed_webhook(b"{}")
    head = _head(server, headers, {"Transfer-Encoding": "chunked"})
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # 80 chunks of 64 KiB = 5 MiB, and never the terminating chunk: a server that waited for the
    # whole body would never answer. The answer must come while the body is still arriving.
    answer, sent = _raw_request(server, head, [chunk] * 80)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert len(_refusals(caplog)) == 1
    server.drain()
    _nothing_stored(store, slack)


# --- F-S7 --------------------------------------------------------------------------------------------------


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _tamper_last(signature: str, flip: int) -> str:
    """The signature with its last base64 character (before `=` padding) changed by XOR-ing `flip` into it.

    32 bytes in base64 leave 2 unused bits in that character: flip=1 changes only those, which a lenient
    decoder ignores; flip=8 changes the signature's bytes.
    """
    version, sig = signature.split(",", 1)
    body, pad = sig.rstrip("="), sig[len(sig.rstrip("=")):]
    return f"{version},{body[:-1]}{B64[B64.index(body[-1]) ^ flip]}{pad}"


def _headers_for(case: str, event: dict) -> tuple[bytes, dict]:
    now = time.time()
    if case == "a-one-day-in-the-future":
        return signed_webhook(event, timestamp=now + 86400)
    if case == "b-301-seconds-old":
        return signed_webhook(event, timestamp=now - 301)
    body, headers = signed_webhook(event)
    if case == "c-last-character-differs":
        headers["webhook-signature"] = _tamper_last(headers["webhook-signature"], 8)
    elif case == "c-last-character-differs-in-unused-bits":
        headers["webhook-signature"] = _tamper_last(headers["webhook-signature"], 1)
    elif case == "d-fractional-timestamp":
        headers["webhook-timestamp"] += ".5"
    elif case == "d-missing-timestamp":
        del headers["webhook-timestamp"]
    elif case == "d-non-numeric-timestamp":
        headers["webhook-timestamp"] = "yesterday"
    elif case == "e-signature-of-another-length":
        headers["webhook-signature"] = headers["webhook-signature"][:-8] + "="
    elif case == "e-signature-twice-as-long":
        version, sig = headers["webhook-signature"].split(",", 1)
        headers["webhook-signature"] = f"{version},{sig[:-1]}{sig}"
    elif case == "missing-signature":
        del headers["webhook-signature"]
    elif case == "another-secret":
        return signed_webhook(event, secret="whsec_" + "QUJD" * 8)
    return body, headers


@pytest.mark.parametrize("case", [
    "a-one-day-in-the-future", "b-301-seconds-old", "c-last-character-differs",
    "c-last-character-differs-in-unused-bits", "d-fractional-timestamp", "d-missing-timestamp",
    "d-non-numeric-timestamp", "e-signature-of-another-length", "e-signature-twice-as-long", "missing-signature",
    "another-secret",
])
@SQLITE_ONLY
def test_F_S7_signatures_that_almost_match(server, store, world, slack, case):
    seed_tenant(store, world, "acme", company=507)
    body, headers = _headers_for(case, export_event("acme"))
    response = _post_raw(server, body, headers)
    assert (response.status_code, response.json()) == (401, {"error": "missing or invalid webhook signature"})
    server.drain()
    _nothing_stored(store, slack)
    assert _diagnoses(store, "acme") == []


@SQLITE_ONLY
def test_F_S7_the_window_is_symmetric_and_290_seconds_pass(server, store, world):
    seed_tenant(store, world, "acme", company=508)
    for skew in (-290, 290):   # inside the window, with room for a slow machine
        response = post_event(server.url, export_event("acme"), timestamp=time.time() + skew)
        assert response.status_code == 202, (skew, response.text)


# --- unknown tenants, recovery, ordering ---------------------------------------------------------------


def test_unknown_tenant_is_kept_and_alerted(server, store, slack):
    response = post_event(server.url, export_event("ghost", event_id="evt_ghost"))
    assert response.status_code == 202
    server.drain()
    inc = store.incidents.get(response.json()["incident"])
    assert (inc.tenant_id, inc.cause, inc.status) == ("ghost", "tenant_unknown", "open")
    assert store.incidents.events(inc.id)[0].id == "evt_ghost"
    message = only_message(slack, ALERT_CHANNEL)
    assert "ghost" in message_text(message)
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_export_succeeded_resolves_the_open_incident_in_place(server, store, world, slack):
    seed_tenant(store, world, "acme", company=510, channel=TENANT_CHANNEL)
    world.remove_integration(510)
    failed = post_event(server.url, export_event("acme", event_id="evt_f1"))
    incident_id = failed.json()["incident"]
    server.drain()
    assert "Resolved" not in message_text(only_message(slack))

    ok = post_event(server.url, export_event("acme", event_id="evt_ok", type="export.succeeded", status=None, body=None))
    assert (ok.status_code, ok.json()) == (202, {"incident": incident_id, "duplicate": False})
    server.drain()

    inc = store.incidents.get(incident_id)
    assert (inc.status, inc.resolved_by, inc.open_key) == ("resolved", "platform", None)
    message = only_message(slack)
    assert len(slack.calls_to("chat.postMessage")) == 1   # updated in place, not posted again
    text = message_text(message)
    when = inc.resolved_at.strftime("%Y-%m-%d %H:%M UTC")
    assert f"✅ Resolved by the integration platform (export.succeeded: a later export went through) at {when}" in text
    assert not [b for b in message.blocks if b["type"] == "actions"]   # no buttons on a resolved alert
    resolved = [a for a in store.audit.for_tenant("acme") if a.action == "resolved"]
    assert [(a.actor, a.detail["by"]) for a in resolved] == [("platform", "export.succeeded")]


def test_an_older_success_does_not_resolve_a_newer_failure(server, store, world, slack):
    seed_tenant(store, world, "acme", company=511)
    world.remove_integration(511)
    now = datetime.now(timezone.utc)
    failed = post_event(server.url, export_event("acme", occurred_at=_iso(now)))
    incident_id = failed.json()["incident"]
    server.drain()
    late = post_event(server.url, export_event("acme", type="export.succeeded", status=None, body=None,
                                               occurred_at=_iso(now - timedelta(minutes=5))))
    assert late.status_code == 202 and late.json()["duplicate"] is False
    server.drain()
    inc = store.incidents.get(incident_id)
    assert (inc.status, inc.resolved_at) == ("open", None)
    assert [a.action for a in store.audit.for_tenant("acme")].count("resolved") == 0
    assert "Resolved" not in message_text(only_message(slack))


def test_an_old_failure_does_not_reopen_a_resolved_incident(server, store, world, slack):
    seed_tenant(store, world, "acme", company=512)
    world.remove_integration(512)
    now = datetime.now(timezone.utc)
    first = post_event(server.url, export_event("acme", occurred_at=_iso(now - timedelta(minutes=2))))
    incident_id = first.json()["incident"]
    server.drain()
    post_event(server.url, export_event("acme", type="export.succeeded", status=None, body=None,
                                        occurred_at=_iso(now - timedelta(minutes=1))))
    server.drain()
    assert store.incidents.get(incident_id).status == "resolved"
    posts = len(slack.calls_to("chat.postMessage"))

    late = post_event(server.url, export_event("acme", occurred_at=_iso(now - timedelta(minutes=3))))
    assert (late.status_code, late.json()) == (202, {"incident": incident_id, "duplicate": False})
    server.drain()
    assert [i.id for i in store.incidents.all()] == [incident_id]
    assert store.incidents.get(incident_id).status == "resolved"
    assert len(slack.calls_to("chat.postMessage")) == posts

    # A failure after the recovery is news: a new incident.
    fresh = post_event(server.url, export_event("acme"))
    assert fresh.json()["incident"] != incident_id
    server.drain()
    assert store.incidents.get(fresh.json()["incident"]).status == "open"


# --- field validation ------------------------------------------------------------------------------------

def _without(key):
    event = export_event("acme")
    del event[key]
    return event


FUTURE = _iso(datetime.now(timezone.utc) + timedelta(days=2))
BAD_EVENTS = [
    (_without("id"), "`id` must be a non-empty string"),
    ({**export_event("acme"), "id": 42}, "`id` must be a non-empty string"),
    ({**export_event("acme"), "id": "   "}, "`id` must be a non-empty string"),
    ({**export_event("acme"), "id": "e" * 201}, "`id` is longer than 200 characters"),
    (_without("type"), "`type` must be a non-empty string"),
    ({**export_event("acme"), "type": "export.exploded"}, "`type` must be one of export.failed, export.succeeded"),
    (_without("tenant"), "`tenant` must be a non-empty string"),
    ({**export_event("acme"), "tenant": ["acme"]}, "`tenant` must be a non-empty string"),
    ({**export_event("acme"), "tenant": "t" * 201}, "`tenant` is longer than 200 characters"),
    (_without("occurred_at"), "`occurred_at` must be a non-empty string"),
    ({**export_event("acme"), "occurred_at": "yesterday"}, "`occurred_at` must be an ISO 8601 time"),
    ({**export_event("acme"), "occurred_at": "2026-12-03T14:02:11"},
     "`occurred_at` needs a UTC offset (e.g. 2026-12-03T14:02:11Z)"),
    ({**export_event("acme"), "occurred_at": FUTURE}, "`occurred_at` is in the future"),
    ({**export_event("acme"), "export": "invoice"}, "`export` must be an object"),
    ({**export_event("acme"), "export": {"kind": 7}}, "`export.kind` must be a non-empty string"),
    ({**export_event("acme"), "export": {"kind": "invoice", "ref": ""}}, "`export.ref` must be a non-empty string"),
    ({**export_event("acme"), "fortnox": [401]}, "`fortnox` must be an object"),
    ({**export_event("acme"), "fortnox": {"status": "401"}}, "`fortnox.status` must be an HTTP status code"),
    ({**export_event("acme"), "fortnox": {"status": 99}}, "`fortnox.status` must be an HTTP status code"),
    ({**export_event("acme"), "fortnox": {"status": True}}, "`fortnox.status` must be an HTTP status code"),
    ({}, "`id` must be a non-empty string"),
]


@SQLITE_ONLY
def test_every_field_validation_answers_400_with_a_clear_message(server, store, slack, caplog):
    caplog.set_level(logging.INFO, logger="bot.webhooks.export")
    for event, error in BAD_EVENTS:
        response = post_event(server.url, event)
        assert (response.status_code, response.json()) == (400, {"error": error}), event
    assert len(_refusals(caplog)) == len(BAD_EVENTS)
    # Deeply nested JSON is refused as JSON, not with a stack trace.
    deep = b"[" * 100_000 + b"]" * 100_000
    body, headers = signed_webhook(deep[: 200 * 1024])
    response = _post_raw(server, body, headers)
    assert response.status_code == 400
    server.drain()
    _nothing_stored(store, slack)


@SQLITE_ONLY
def test_fortnox_body_in_any_shape_is_accepted(server, store, world):
    seed_tenant(store, world, "acme", company=513)
    bodies = [{"errorinformation": {"Error": 1, "Message": "Invalid login", "Code": 2000310}},
              "<html><body>503 Service Unavailable</body></html>", "", None]
    for body in bodies:
        event = export_event("acme", body=body)
        if body is None:
            del event["fortnox"]
        response = post_event(server.url, event)
        assert response.status_code == 202, (body, response.text)
    server.drain()


@SQLITE_ONLY
def test_a_store_failure_answers_503_so_the_platform_redelivers(server, store, world, slack, caplog):
    seed_tenant(store, world, "acme", company=514)
    incidents = server.bot.store.incidents

    def store_down(events):
        raise ConnectionError("database unreachable")

    incidents.ingest = incidents.ingest_many = store_down   # fault injection: the store stops answering
    event = export_event("acme", event_id="evt_later")
    response = post_event(server.url, event)
    assert (response.status_code, response.json()) == (
        503, {"error": "the bot cannot store events right now; please redeliver later"})
    assert response.headers["retry-after"] == "30"
    assert "database unreachable" not in response.text
    assert any("evt_later not stored: ConnectionError" in r.getMessage() for r in caplog.records)

    del incidents.ingest, incidents.ingest_many   # the store is back: the redelivery is the first time the bot sees it
    again = post_event(server.url, event)
    assert (again.status_code, again.json()["duplicate"]) == (202, False)
