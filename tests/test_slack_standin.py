"""The Slack stand-in, driven by slack_sdk's real clients over loopback."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs

import httpx
import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.slack_standin import requests as slack_requests
from bot.slack_standin.runner import SlackStandin

TOKEN = "xoxb-test"
SECRET = "test-signing-secret"
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*acme*: login failed"}}
BUTTON = {
    "type": "actions",
    "block_id": "actions",
    "elements": [
        {"type": "button", "action_id": "reactivation.request", "value": "inc_1", "text": {"type": "plain_text", "text": "Request"}}
    ],
}


@pytest.fixture(scope="module")
def server():
    with SlackStandin(bot_token=TOKEN) as slack:
        yield slack


@pytest.fixture
def slack(server):
    server.state.reset()
    return server


@pytest.fixture
async def client(slack):
    yield AsyncWebClient(token=TOKEN, base_url=slack.api_url)


def test_urls(slack):
    assert slack.url.startswith("http://127.0.0.1:") and int(slack.url.rsplit(":", 1)[1]) > 0
    assert slack.api_url == slack.url + "/api/"


async def test_post_thread_update_permalink_recorded(slack, client):
    parent = await client.chat_postMessage(channel="C_ALERTS", text="acme: login failed", blocks=[SECTION, BUTTON])
    ts = parent["ts"]
    assert parent["channel"] == "C_ALERTS" and parent["message"]["blocks"] == [SECTION, BUTTON]
    r1 = await client.chat_postMessage(channel="C_ALERTS", text="first reply", thread_ts=ts)
    r2 = await client.chat_postMessage(channel="C_ALERTS", text="second reply", thread_ts=ts)
    assert float(ts) < float(r1["ts"]) < float(r2["ts"])

    approved = {"type": "section", "text": {"type": "mrkdwn", "text": "Approved by <@U_ADMIN1>"}}
    await client.chat_update(channel="C_ALERTS", ts=ts, text="approved", blocks=[approved])
    link = await client.chat_getPermalink(channel="C_ALERTS", message_ts=ts)
    assert link["permalink"] == f"{slack.url}/archives/C_ALERTS/p{ts.replace('.', '')}"

    message = slack.messages[("C_ALERTS", ts)]
    assert (message.text, message.blocks, message.updates) == ("approved", [approved], 1)
    assert message.history == [{"text": "acme: login failed", "blocks": [SECTION, BUTTON]}]
    assert [m.text for m in slack.thread("C_ALERTS", ts)] == ["first reply", "second reply"]
    assert all(m.thread_ts == ts for m in slack.thread("C_ALERTS", ts))

    posts = slack.calls_to("chat.postMessage")
    assert len(posts) == 3 and posts[0].args["blocks"] == [SECTION, BUTTON]  # parsed, not a JSON string
    assert posts[0].token == TOKEN and posts[0].status == 200 and posts[0].error is None
    assert [c.method for c in slack.calls] == ["chat.postMessage"] * 3 + ["chat.update", "chat.getPermalink"]


async def test_update_keeps_blocks_when_absent_and_rejects_unknown_ts(slack, client):
    r = await client.chat_postMessage(channel="C1", text="t", blocks=[SECTION])
    await client.chat_update(channel="C1", ts=r["ts"], text="t2")
    assert slack.messages[("C1", r["ts"])].blocks == [SECTION]
    with pytest.raises(SlackApiError) as e:
        await client.chat_update(channel="C1", ts="1700000000.000001", text="x")
    assert e.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as e:
        await client.chat_update(channel="C2", ts=r["ts"], text="x")  # right ts, wrong channel
    assert e.value.response["error"] == "message_not_found"


def test_sync_web_client_form_encoded(slack):
    client = WebClient(base_url=slack.api_url)  # no Authorization header: token in the form
    r = client.api_call(
        "chat.postMessage",
        data={"token": TOKEN, "channel": "C1", "text": "form", "blocks": json.dumps([SECTION])},
    )
    assert r["ok"] and slack.messages[("C1", r["ts"])].blocks == [SECTION]
    call = slack.calls_to("chat.postMessage")[0]
    assert call.token == TOKEN and call.args == {"channel": "C1", "text": "form", "blocks": [SECTION]}
    eph = WebClient(token=TOKEN, base_url=slack.api_url).chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert float(eph["message_ts"]) > float(r["ts"])


async def test_51_blocks_are_invalid_blocks(slack, client):
    blocks = [{"type": "divider"}] * 51
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel="C1", text="too many", blocks=blocks)
    assert e.value.response["error"] == "invalid_blocks"
    assert any("51 blocks" in p for p in e.value.response["errors"])
    assert slack.messages == {}
    assert slack.calls_to("chat.postMessage")[0].error == "invalid_blocks"


async def test_no_text_and_missing_fallback(slack, client):
    with pytest.raises(SlackApiError) as e, pytest.warns(UserWarning):
        await client.chat_postMessage(channel="C1")
    assert e.value.response["error"] == "no_text"
    with pytest.raises(SlackApiError) as e, pytest.warns(UserWarning, match="top-level `text`"):
        await client.chat_postMessage(channel="C1", blocks=[SECTION])  # blocks without fallback text
    assert e.value.response["error"] == "invalid_blocks"


async def test_auth(slack):
    me = await AsyncWebClient(token=TOKEN, base_url=slack.api_url).auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == ("U_BOT", "B_BOT", "T_TEST")
    with pytest.raises(SlackApiError) as e:
        await AsyncWebClient(token="xoxb-other", base_url=slack.api_url).auth_test()
    assert e.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as e:
        await AsyncWebClient(token=TOKEN, base_url=slack.api_url).api_call("files.upload")
    assert e.value.response["error"] == "unknown_method"


async def test_429_is_retried_by_rate_limit_handler(slack):
    client = AsyncWebClient(token=TOKEN, base_url=slack.api_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    slack.state.fail("chat.postMessage", status=429, retry_after=0)
    r = await client.chat_postMessage(channel="C1", text="after retry")
    calls = slack.calls_to("chat.postMessage")
    assert [(c.status, c.error) for c in calls] == [(429, "ratelimited"), (200, None)]
    assert slack.messages[("C1", r["ts"])].text == "after retry"


def test_fault_shapes(slack):
    slack.state.fail("chat.postMessage", status=429, retry_after=7)
    slack.state.fail("chat.postMessage", status=503)
    slack.state.fail("chat.postMessage", error="fatal_error", times=2)
    form = {"channel": "C1", "text": "x"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=slack.api_url, headers=auth) as http:
        r = http.post("chat.postMessage", data=form)
        assert (r.status_code, r.headers["retry-after"], r.json()["error"]) == (429, "7", "ratelimited")
        r = http.post("chat.postMessage", data=form)
        assert (r.status_code, r.text) == (503, "Service Unavailable")
        assert [http.post("chat.postMessage", data=form).json() for _ in range(2)] == [{"ok": False, "error": "fatal_error"}] * 2
        assert http.post("chat.postMessage", data=form).json()["ok"] is True  # faults used up


def test_channel_error(slack):
    slack.state.channel_error("C_NOT_JOINED", "not_in_channel")
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel="C_NOT_JOINED", text="x")
    assert e.value.response["error"] == "not_in_channel"
    assert client.chat_postMessage(channel="C_OTHER", text="x")["ok"]
    assert client.conversations_info(channel="C_NOT_JOINED")["channel"]["is_member"] is False


def test_post_rate_limit_per_channel(slack):
    slack.state.post_rate_limit = (1, 1.0)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=slack.api_url, headers=auth) as http:
        assert http.post("chat.postMessage", data={"channel": "C1", "text": "1"}).status_code == 200
        r = http.post("chat.postMessage", data={"channel": "C1", "text": "2"})
        assert (r.status_code, r.headers["retry-after"]) == (429, "1")
        assert http.post("chat.postMessage", data={"channel": "C2", "text": "3"}).status_code == 200
    assert len(slack.messages) == 2


def test_usergroups_users_and_latency(slack):
    slack.state.usergroups = {"S0ADMINS": ["U_ADMIN1", "U_ADMIN2"]}
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    assert client.usergroups_users_list(usergroup="S0ADMINS")["users"] == ["U_ADMIN1", "U_ADMIN2"]
    with pytest.raises(SlackApiError) as e:
        client.usergroups_users_list(usergroup="S_NONE")
    assert e.value.response["error"] == "no_such_subteam"
    slack.state.latency = 0.2
    started = time.monotonic()
    assert client.users_info(user="U_ADMIN1")["user"]["id"] == "U_ADMIN1"
    assert time.monotonic() - started >= 0.2


async def test_response_url_records_and_allows_five_uses(slack):
    webhook = AsyncWebhookClient(slack.response_url("cmd-1"))  # what Bolt's respond() uses
    for i in range(5):
        r = await webhook.send(text=f"update {i}", response_type="ephemeral")
        assert (r.status_code, r.body) == (200, "ok")
    r = await webhook.send(text="one too many")
    assert (r.status_code, r.body) == (404, "used_url")
    assert [b["text"] for b in slack.responses("cmd-1")] == [f"update {i}" for i in range(5)]
    assert [c.status for c in slack.calls_to("response_url")] == [200] * 5 + [404]
    assert slack.calls_to("response_url")[0].key == "cmd-1"


async def test_response_url_replace_original_edits_channel_message(slack, client):
    posted = await client.chat_postMessage(channel="C1", text="alert", blocks=[SECTION, BUTTON])
    url = slack.response_url("act-1", channel="C1", message_ts=posted["ts"])
    r = await AsyncWebhookClient(url).send(text="Requested", replace_original=True)
    assert r.status_code == 200
    message = slack.messages[("C1", posted["ts"])]
    assert (message.text, message.updates) == ("Requested", 1)
    bad = await AsyncWebhookClient(slack.response_url("act-2")).send(text="x", blocks=[{"type": "divider"}] * 51)
    assert (bad.status_code, bad.body) == (400, "invalid_blocks")
    assert slack.responses("act-2") == []


def test_wait_for(slack):
    with pytest.raises(AssertionError, match=r"chat\.update.*recorded: \['auth\.test\(200\)'\]"):
        WebClient(token=TOKEN, base_url=slack.api_url).auth_test()
        slack.wait_for("chat.update", timeout=0.1)
    assert len(slack.wait_for("auth.test")) == 1


async def test_async_wait_for_lets_the_loop_run(slack, client):
    task = asyncio.create_task(client.chat_postMessage(channel="C1", text="later"))
    calls = await slack.async_wait_for("chat.postMessage", timeout=2)
    await task
    assert calls[0].args["text"] == "later"


# --- requests.py: signed inbound requests ----------------------------------------------


def _verify(body: bytes, headers: dict) -> bool:
    return SignatureVerifier(SECRET).is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])


def test_signed_requests_verify():
    body, headers = slack_requests.slash_command(SECRET, text="diagnose acme", response_url="http://x/response/k")
    assert _verify(body, headers) and headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(body.decode())
    assert (form["command"], form["text"], form["user_id"], form["channel_id"]) == (
        ["/fortnox"], ["diagnose acme"], ["U_OPERATOR"], ["C_SUPPORT"]
    )
    assert not _verify(body + b"x", headers)
    assert not SignatureVerifier("other").is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])

    old = int(time.time()) - 301
    body, headers = slack_requests.event_callback(SECRET, event_id="Ev1", event={"type": "app_mention"}, timestamp=old)
    assert headers["X-Slack-Request-Timestamp"] == str(old) and not _verify(body, headers)  # outside the 300 s window

    body, headers = slack_requests.event_callback(
        SECRET, event_id="Ev1", event={"type": "app_home_opened"}, retry_num=1, retry_reason="http_timeout"
    )
    assert _verify(body, headers) and json.loads(body)["event_id"] == "Ev1"
    assert (headers["X-Slack-Retry-Num"], headers["X-Slack-Retry-Reason"]) == ("1", "http_timeout")

    body, headers = slack_requests.block_action(
        SECRET, action_id="reactivation.approve", value="inc_1", user_id="U_ADMIN1",
        channel_id="C1", message_ts="1700000000.000100", response_url="http://x/response/a",
    )
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert _verify(body, headers) and payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U_ADMIN1" and payload["container"]["message_ts"] == "1700000000.000100"
    assert payload["actions"][0]["action_id"] == "reactivation.approve" and payload["actions"][0]["value"] == "inc_1"


async def test_bolt_accepts_the_signed_requests(slack):
    """Bolt (with the stand-in behind it for auth.test) parses what requests.py builds."""
    app = AsyncApp(client=AsyncWebClient(token=TOKEN, base_url=slack.api_url), signing_secret=SECRET)
    seen: list[tuple[str, str]] = []

    @app.command("/fortnox")
    async def command(ack, command):
        await ack("Diagnosing…")
        seen.append(("command", command["text"]))

    @app.action("reactivation.request")
    async def action(ack, body):
        await ack()
        seen.append(("action", body["user"]["id"]))

    @app.event("app_mention")
    async def mention(event):
        seen.append(("event", event["text"]))

    async def dispatch(built):
        body, headers = built
        return await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=headers))

    url = slack.response_url("k")
    r = await dispatch(slack_requests.slash_command(SECRET, text="diagnose acme", response_url=url))
    assert (r.status, r.body) == (200, "Diagnosing…")
    r = await dispatch(slack_requests.block_action(
        SECRET, action_id="reactivation.request", value="inc_1", user_id="U_OP", channel_id="C1",
        message_ts="1700000000.000100", response_url=url,
    ))
    assert r.status == 200
    r = await dispatch(slack_requests.event_callback(SECRET, event_id="Ev9", event={"type": "app_mention", "text": "hi"}))
    assert r.status == 200
    body, headers = slack_requests.slash_command(SECRET, text="x", response_url=url)
    sig = headers["X-Slack-Signature"]
    headers["X-Slack-Signature"] = sig[:-1] + ("1" if sig.endswith("0") else "0")
    assert (await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=headers))).status == 401
    for _ in range(100):  # listeners finish after the ack
        if len(seen) == 3:
            break
        await asyncio.sleep(0.01)
    assert sorted(seen) == [("action", "U_OP"), ("command", "diagnose acme"), ("event", "hi")]
    assert len(slack.calls_to("auth.test")) == 1  # Bolt checks the token once, against the stand-in
