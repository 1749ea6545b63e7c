"""Property tests against the real bot over loopback: whatever arrives, correctly signed, the answer is never a
500, no user ever sees a traceback, no background job dies of it, and no stored token changes.

One server per test function, reused by every example (hypothesis runs inside the test body, so the
function-scoped fixtures are set up once). Example counts are modest to keep the suite fast.
"""
from __future__ import annotations

import json
import string
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.cards.diagnosis_card import build_diagnosis_card
from bot.diagnosis.model import Cause
from bot.slack.limits import validate_message
from bot.slack.render import render_card
from bot.slack_standin import requests as slack_requests
from tests.support.seed import ADMIN, OPERATOR, SIGNING_SECRET, export_event, seed_tenant, signed_webhook

# 25 examples on each store (SQLite and PostgreSQL): 50 per property.
PROPERTY = settings(max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=12)
ACTIONS = ["diagnose.rerun", "reactivation.request", "reactivation.approve", "reactivation.deny", "exports.replay",
           "incident.snooze", "incident.resolve"]


def _tokens(store, tenant_id: str = "acme"):
    c = store.connections.load(tenant_id)
    return c.access_token, c.refresh_token, c.generation, c.state


def _no_trace(text: str) -> None:
    assert "Traceback" not in text and 'File "/' not in text


def _after_all(server, store, before) -> None:
    """Every queued job finished (none failed on odd input), and acme's tokens are exactly as seeded."""
    server.drain(60)
    failed = [(j.kind, j.last_error) for j in store.jobs.pending()] + \
             [(k, n) for k, n in store.jobs.counts().items() if k == "failed"]
    assert failed == [], failed
    assert _tokens(store) == before


# --- webhook bodies ---------------------------------------------------------------------------

def _event_like():
    """Objects shaped like export events, every field possibly wrong, missing or odd."""
    maybe = lambda s: st.one_of(s, JSON)   # noqa: E731
    fields = {
        "id": maybe(st.text(min_size=1, max_size=60)),
        "type": maybe(st.sampled_from(["export.failed", "export.succeeded", "export.other"])),
        "tenant": maybe(st.sampled_from(["acme", "ghost", "<!channel>", "a" * 201]) | st.text(max_size=30)),
        "occurred_at": maybe(st.sampled_from(["2026-12-03T14:02:11Z", "2026-12-03T14:02:11", "yesterday",
                                              "9999-12-31T23:59:59Z", "2026-12-03T14:02:11+14:00"])),
        "export": maybe(st.fixed_dictionaries({}, optional={"kind": maybe(st.sampled_from(["invoice", "INVOICE", "x"])),
                                                            "ref": maybe(st.text(max_size=40))})),
        "fortnox": maybe(st.fixed_dictionaries({}, optional={"status": maybe(st.integers(-1, 1000)), "body": JSON})),
    }
    return st.fixed_dictionaries({}, optional=fields)


WEBHOOK_BODIES = st.one_of(
    st.binary(max_size=300),
    JSON.map(lambda v: json.dumps(v).encode()),
    _event_like().map(lambda v: json.dumps(v).encode()),
    _event_like().map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.builds(lambda e, s: json.dumps({**export_event("acme"), **e}).encode(),
              _event_like(), st.none()),
)


def test_signed_webhook_bodies_never_500(server, store, world, slack):
    seed_tenant(store, world, "acme", company=901)
    before = _tokens(store)
    seen: set[int] = set()

    nul = export_event("acme\x00", event_id="evt\x00nul", ref="INV\x00", body="<html>\x00</html>")

    @PROPERTY
    @given(body=WEBHOOK_BODIES, content_type=st.sampled_from(["application/json", "application/cloudevents+json",
                                                              "text/plain", ""]))
    @example(body=json.dumps(nul).encode(), content_type="application/json")
    @example(body=json.dumps({**export_event("acme"), "fortnox": {"status": 401, "body": "\x00"}}).encode(),
             content_type="application/json")
    @example(body=b'{"id": "\xff\xfe"}', content_type="application/json")
    def check(body, content_type):
        raw, headers = signed_webhook(body, content_type=content_type)
        r = httpx.post(f"{server.url}/webhooks/export-failure", content=raw, headers=headers, timeout=10)
        seen.add(r.status_code)
        assert r.status_code in (202, 400, 401, 413, 415), (r.status_code, r.text)
        assert isinstance(r.json(), dict)      # every answer is a JSON object, errors included
        _no_trace(r.text)

    check()
    assert {202, 400} <= seen
    _after_all(server, store, before)


# --- slash commands ---------------------------------------------------------------------------

SLASH_TEXT = st.one_of(
    st.text(max_size=120),
    st.builds(lambda w, t: f"{w} {t}", st.sampled_from(["diagnose", "status", "reactivate", "help", "DIAGNOSE"]),
              st.text(max_size=80)),
    st.sampled_from(["diagnose acme", "diagnose “acme”", "diagnose <@U123>", "diagnose <!channel>", "reactivate acme",
                     "diagnose \u0000", "diagnose " + "x" * 3000, "status status", "help me"]),
)


def test_slash_command_text_never_500(server, store, world, slack):
    seed_tenant(store, world, "acme", company=902)
    before = _tokens(store)

    keys: list[str] = []

    @PROPERTY
    @given(text=SLASH_TEXT, user=st.sampled_from([OPERATOR, ADMIN, ""]))
    @example(text="diagnose \x00", user=OPERATOR)
    @example(text="reactivate ac\x00me", user=ADMIN)
    def check(text, user):
        keys.append(f"cmd-{len(keys)}")
        body, headers = slack_requests.slash_command(SIGNING_SECRET, text=text, user_id=user,
                                                     response_url=slack.response_url(keys[-1]))
        r = httpx.post(f"{server.url}/slack/events", content=body, headers=headers, timeout=10)
        assert r.status_code == 200, (r.status_code, r.text)
        answer = r.json()
        assert answer.get("text")
        _no_trace(answer["text"])
        assert "went wrong" not in answer["text"], (text, answer["text"])   # odd input is not an internal error

    check()
    _after_all(server, store, before)
    for key in keys:
        for reply in slack.responses(key):
            _no_trace(json.dumps(reply))


# --- block actions ----------------------------------------------------------------------------

def _payload(draw_action, value, drop, user, extra_actions, odd=None):
    action = {"action_id": draw_action, "block_id": "actions", "type": "button", "action_ts": "1.2"}
    if value is not None:
        action["value"] = value
    payload = {
        "type": "block_actions", "user": {"id": user}, "api_app_id": "A_FORTNOX", "token": "t",
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": "C0ACME"},
        "channel": {"id": "C0ACME"}, "team": {"id": "T_TEST"}, "response_url": "",
        "actions": [action, *extra_actions],
    }
    for key in drop:
        payload.pop(key, None)
    if odd:
        payload.update(odd)    # a field of the wrong type
    return payload


ACTION_PAYLOADS = st.builds(
    _payload,
    st.sampled_from(ACTIONS) | st.text(max_size=30),
    st.none() | st.text(max_size=60) | st.sampled_from(["inc_0000000000", "inc_x|1h", "|", "req_unknown"]),
    st.lists(st.sampled_from(["user", "container", "channel", "team", "response_url", "actions"]), max_size=3),
    st.sampled_from([OPERATOR, ADMIN, "", "<!channel>"]),
    st.lists(st.fixed_dictionaries({"action_id": st.text(max_size=10)}), max_size=2),
    st.none() | st.dictionaries(st.sampled_from(["user", "container", "channel", "team", "actions", "message",
                                                 "type", "response_url"]), JSON, max_size=2),
)


def test_block_action_payloads_never_500(server, store, world, slack):
    seed_tenant(store, world, "acme", company=903)
    before = _tokens(store)
    answered: list[str] = []

    @PROPERTY
    @given(payload=ACTION_PAYLOADS, raw=st.none() | st.sampled_from(["", "not json", "[]", "{}", "null"]))
    def check(payload, raw):
        key = f"act-{len(answered)}"
        answered.append(key)
        if "response_url" in payload:
            payload["response_url"] = slack.response_url(key)
        text = json.dumps(payload) if raw is None else raw
        body = urlencode({"payload": text}).encode()
        headers = slack_requests.sign(SIGNING_SECRET, body, content_type=slack_requests.FORM)
        r = httpx.post(f"{server.url}/slack/events", content=body, headers=headers, timeout=10)
        assert r.status_code < 500, (r.status_code, r.text)
        _no_trace(r.text)

    check()
    _after_all(server, store, before)
    for key in answered:
        for reply in slack.responses(key):
            _no_trace(json.dumps(reply))


# --- Fortnox error bodies -----------------------------------------------------------------------

FORTNOX_BODIES = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.sampled_from(["<html><body><h1>503</h1></body></html>", "", " ", "null", "{", "Invalid login"]),
    JSON.filter(lambda v: isinstance(v, (dict, list))),
    st.fixed_dictionaries({"ErrorInformation": st.fixed_dictionaries({}, optional={
        k: JSON | st.integers(0, 3_000_000) | st.text(alphabet=string.digits, max_size=8)
        for k in ("error", "Error", "message", "Message", "code", "Code")})}),
)


TENANTS = {f"f{i}": 9040 + i for i in range(8)}   # spread over tenants: each has its own Fortnox rate window


def test_fortnox_error_bodies_never_break_a_diagnosis_or_a_token(server, store, world, slack):
    for tid, company in TENANTS.items():
        seed_tenant(store, world, tid, company=company)

    @PROPERTY
    @given(status=st.sampled_from([200, 400, 401, 403, 404, 500, 502, 503]) | st.integers(200, 599).filter(lambda s: s != 429),
           body=FORTNOX_BODIES, path=st.sampled_from(["/3/companyinformation", "/3/invoices", "/3/me"]),
           tenant=st.sampled_from(sorted(TENANTS)))
    def check(status, body, path, tenant):
        world.unforce()
        world.force(TENANTS[tenant], path, status, body)
        before, refreshes = _tokens(store, tenant), len(world.token_calls)
        d = server.call(server.bot.runtime.diagnoser.run(tenant, trigger="property"))
        assert isinstance(d.cause, Cause)
        message = render_card(build_diagnosis_card(d, "Acme AB", None, None))
        assert validate_message(message["text"], message["blocks"]) == []
        _no_trace(json.dumps(message, ensure_ascii=False))
        after = _tokens(store, tenant)
        if len(world.token_calls) == refreshes:
            assert after == before                       # no refresh: not a byte changed
        cred = store.connections.load(tenant)
        assert cred.state == "active" and cred.refresh_owner is None
        assert world.authenticate(f"Bearer {cred.access_token}", None).token is not None   # still usable

    check()
    assert all(c["ok"] for c in world.token_calls)      # a refresh, when an answer asked for one, always worked
