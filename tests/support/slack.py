"""Helpers for tests that talk to the real bot the way Slack does: signed requests in, recorded calls out."""
from __future__ import annotations

import json
import secrets
from urllib.parse import parse_qs, urlencode

import httpx

from bot.slack_standin import requests as slack_requests
from tests.support.seed import SIGNING_SECRET


def message_text(message) -> str:
    """Every text Slack would parse as mrkdwn (fallback + mrkdwn objects), joined: of a stand-in Message, or of
    a message as a dict (a response_url body, an entry of Message.history)."""
    if isinstance(message, dict):
        return "\n".join([message.get("text") or ""] + mrkdwn_texts(message.get("blocks") or []))
    return "\n".join([message.text or ""] + mrkdwn_texts(message.blocks or []))


def mrkdwn_texts(node) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            out.append(node["text"])
        for value in node.values():
            out += mrkdwn_texts(value)
    elif isinstance(node, list):
        for value in node:
            out += mrkdwn_texts(value)
    return out


def action_ids(message) -> list[str]:
    return [el["action_id"] for b in (message.blocks or []) if b["type"] == "actions" for el in b["elements"]]


def element(message, action_id: str) -> dict:
    for b in message.blocks or []:
        for el in b.get("elements", []) if b["type"] == "actions" else []:
            if el["action_id"] == action_id:
                return el
    raise AssertionError(f"no {action_id} element in the message")


def post_slack(server, body: bytes, headers: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/slack/events", content=body, headers=headers, timeout=10)


def command(server, slack, text: str, *, user: str = "U0OPERATOR", channel: str = "C0SUPPORT",
            key: str | None = None) -> tuple[httpx.Response, str]:
    """POST `/fortnox <text>` as Slack would; returns (HTTP response, the response_url key)."""
    key = key or f"cmd-{secrets.token_hex(4)}"
    body, headers = slack_requests.slash_command(SIGNING_SECRET, text=text, user_id=user, channel_id=channel,
                                                 response_url=slack.response_url(key))
    return post_slack(server, body, headers), key


def click(server, slack, message, action_id: str, *, user: str, value: str | None = None,
          option: str | None = None, key: str | None = None) -> tuple[httpx.Response, str]:
    """Click a button (or choose an option of a static_select) on a stand-in Message, signed as Slack does."""
    key = key or f"act-{secrets.token_hex(4)}"
    if value is None and option is None:
        value = element(message, action_id).get("value", "")
    body, headers = slack_requests.block_action(
        SIGNING_SECRET, action_id=action_id, value=value or "", user_id=user, channel_id=message.channel,
        message_ts=message.ts, response_url=slack.response_url(key), message=message)
    if option is not None:
        body, headers = _as_select(body, option)
    return post_slack(server, body, headers), key


def _as_select(body: bytes, option: str) -> tuple[bytes, dict]:
    """Turn a button payload into a static_select one: Slack sends `selected_option`, no `value`."""
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    action = payload["actions"][0]
    action.pop("value", None)
    action.update(type="static_select", selected_option={"text": {"type": "plain_text", "text": option},
                                                          "value": option})
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    return raw, slack_requests.sign(SIGNING_SECRET, raw, content_type=slack_requests.FORM)


def only_message(slack, channel: str | None = None):
    """The single top-level message the bot posted (in `channel`, if given)."""
    tops = [m for m in slack.messages.values() if m.thread_ts is None and (channel is None or m.channel == channel)]
    assert len(tops) == 1, f"expected one top-level message, got {len(tops)}"
    return tops[0]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll `predicate` until it returns something truthy; fail with a clear message after `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
