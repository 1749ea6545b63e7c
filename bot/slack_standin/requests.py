"""Inbound requests built exactly as Slack sends them to a Request URL, signed (reference §3, §11).

Each builder returns (raw body bytes, headers); POST them unchanged, since the
signature covers the raw bytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, is_dataclass
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
APP_ID = "A_FORTNOX"
BOT_USER_ID = "U_BOT"  # matches StandinState's default bot identity
BOT_ID = "B_BOT"
_VERIFICATION_TOKEN = "legacy-verification-token"  # Slack still sends it; Bolt ignores it


def sign(
    signing_secret: str, body: bytes, timestamp: int | None = None, *, content_type: str | None = None
) -> dict[str, str]:
    """Slack's v0 signature headers for `body`; the content type is guessed from the body unless given."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    if content_type is None:
        content_type = JSON if body.lstrip().startswith(b"{") else FORM
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature or "",
    }


def slash_command(
    signing_secret: str,
    *,
    text: str,
    user_id: str = "U_OPERATOR",
    channel_id: str = "C_SUPPORT",
    response_url: str,
    command: str = "/fortnox",
    team_id: str = "T_TEST",
    trigger_id: str = "trig.1",
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = urlencode(
        {
            "token": _VERIFICATION_TOKEN,
            "team_id": team_id,
            "team_domain": "test",
            "channel_id": channel_id,
            "channel_name": channel_id.lower(),
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    ).encode()
    return body, sign(signing_secret, body, timestamp, content_type=FORM)


def _message_dict(message: Any, message_ts: str) -> dict:
    if message is None:
        return {"type": "message", "ts": message_ts, "user": BOT_USER_ID, "bot_id": BOT_ID, "text": "", "blocks": []}
    if is_dataclass(message) and not isinstance(message, type):  # a stand-in Message
        m = asdict(message)
        out = {"type": "message", "ts": m["ts"], "user": BOT_USER_ID, "bot_id": BOT_ID, "text": m["text"] or ""}
        if m["blocks"] is not None:
            out["blocks"] = m["blocks"]
        if m["thread_ts"]:
            out["thread_ts"] = m["thread_ts"]
        return out
    return {"ts": message_ts, **message}


def block_action(
    signing_secret: str,
    *,
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str,
    message_ts: str,
    response_url: str,
    block_id: str = "actions",
    team_id: str = "T_TEST",
    timestamp: int | None = None,
    message: dict | Any | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A button click; `message` (dict, or a stand-in Message) is the message holding the button."""
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id},
        "api_app_id": APP_ID,
        "token": _VERIFICATION_TOKEN,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id, "is_ephemeral": False},
        "trigger_id": f"trig.{message_ts}",
        "team": {"id": team_id, "domain": "test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_id.lower()},
        "message": _message_dict(message, message_ts),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, sign(signing_secret, body, timestamp, content_type=FORM)


def event_callback(
    signing_secret: str,
    *,
    event_id: str,
    event: dict,
    team_id: str = "T_TEST",
    timestamp: int | None = None,
    retry_num: int | None = None,
    retry_reason: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    envelope = {
        "token": _VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"ctx-{event_id}",
    }
    body = json.dumps(envelope).encode()
    headers = sign(signing_secret, body, timestamp, content_type=JSON)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
    if retry_reason is not None:
        headers["X-Slack-Retry-Reason"] = retry_reason
    return body, headers
