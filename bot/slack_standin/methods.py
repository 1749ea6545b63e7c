"""Web API methods of the stand-in, and the response_url behaviour.

Pure functions over StandinState (no HTTP here), so app.py stays a thin
adapter. Slack's rules that catch bot bugs are enforced: Block Kit limits
(bot.slack.limits), chat.update only on the bot's own messages, response_url
use limits. Error codes are Slack's own.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable

from bot.slack.limits import validate_message

from .state import Call, Message, StandinState

_TS = re.compile(r"^\d+\.\d+$")


@dataclass
class Reply:
    status: int
    body: dict | str  # dict -> JSON, str -> text/plain
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error, self.extra = error, extra


def _message_json(state: StandinState, m: Message) -> dict:
    out: dict[str, Any] = {
        "type": "message",
        "user": state.bot_user_id,
        "bot_id": state.bot_id,
        "team": state.team_id,
        "text": m.text or "",
        "ts": m.ts,
    }
    if m.blocks is not None:
        out["blocks"] = m.blocks
    if m.thread_ts:
        out["thread_ts"] = m.thread_ts
    if m.metadata is not None:
        out["metadata"] = m.metadata
    return out


def _content(args: dict, *, required: bool = True) -> tuple[str | None, list | None]:
    """(text, blocks) of a message, checked as Slack does; raises ApiError."""
    text, blocks = args.get("text"), args.get("blocks")
    if required and not text and not blocks and not args.get("attachments"):
        raise ApiError("no_text")
    if blocks is not None and not isinstance(blocks, list):
        raise ApiError("invalid_blocks_format")
    problems = validate_message(text, blocks)
    if problems:
        raise ApiError("invalid_blocks", errors=problems)
    return text, blocks


def _require(args: dict, *names: str) -> list[str]:
    missing = [n for n in names if not args.get(n)]
    if missing:
        messages = [f"[ERROR] missing required field: {n}" for n in missing]
        raise ApiError("invalid_arguments", response_metadata={"messages": messages})
    return [str(args[n]) for n in names]


def auth_test(state: StandinState, args: dict, base_url: str) -> dict:
    return {
        "url": base_url + "/",
        "team": state.team,
        "user": "fortnox-bot",
        "team_id": state.team_id,
        "user_id": state.bot_user_id,
        "bot_id": state.bot_id,
        "is_enterprise_install": False,
    }


def chat_post_message(state: StandinState, args: dict, base_url: str) -> dict:
    channel = args.get("channel")
    if not channel:
        raise ApiError("channel_not_found")
    if error := state.channel_error_for(channel):
        raise ApiError(error)
    text, blocks = _content(args)
    thread_ts = args.get("thread_ts")
    if thread_ts and not _TS.match(str(thread_ts)):
        raise ApiError("invalid_thread_ts")
    metadata = args.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and isinstance(metadata.get("event_type"), str)
                                     and isinstance(metadata.get("event_payload"), dict)):
        raise ApiError("invalid_metadata_format")
    m = state.post(channel, text, blocks, str(thread_ts) if thread_ts else None, metadata)
    return {"channel": channel, "ts": m.ts, "message": _message_json(state, m)}


def chat_update(state: StandinState, args: dict, base_url: str) -> dict:
    channel, ts = _require(args, "channel", "ts")
    m = state.find(channel, ts)
    if m is None:
        raise ApiError("message_not_found")  # also: not posted by this bot, or ephemeral
    if "text" not in args and "blocks" not in args:
        raise ApiError("no_text")
    # Slack keeps the previous blocks when `blocks` is absent ([] removes them).
    blocks = args["blocks"] if "blocks" in args else m.blocks
    text, blocks = _content({**args, "blocks": blocks}, required=False)
    state.update(m, text, blocks)
    return {"channel": channel, "ts": ts, "text": text or "", "message": _message_json(state, m)}


def chat_post_ephemeral(state: StandinState, args: dict, base_url: str) -> dict:
    _require(args, "channel", "user")
    _content(args)
    return {"message_ts": state.next_ts()}


def chat_get_permalink(state: StandinState, args: dict, base_url: str) -> dict:
    channel, ts = _require(args, "channel", "message_ts")
    if state.find(channel, ts) is None:
        raise ApiError("message_not_found")
    return {"channel": channel, "permalink": f"{base_url}/archives/{channel}/p{ts.replace('.', '')}"}


def usergroups_users_list(state: StandinState, args: dict, base_url: str) -> dict:
    (group,) = _require(args, "usergroup")
    if group not in state.usergroups:
        raise ApiError("no_such_subteam")
    return {"users": list(state.usergroups[group])}


def conversations_info(state: StandinState, args: dict, base_url: str) -> dict:
    (channel,) = _require(args, "channel")
    error = state.channel_error_for(channel)
    if error == "channel_not_found":
        raise ApiError(error)
    return {
        "channel": {
            "id": channel,
            "name": channel.lower(),
            "is_channel": True,
            "is_private": False,
            "is_archived": error == "is_archived",
            "is_member": error != "not_in_channel",
        }
    }


def conversations_history(state: StandinState, args: dict, base_url: str) -> dict:
    """Top-level messages, newest first, between `oldest` and `latest`; metadata only when asked for."""
    (channel,) = _require(args, "channel")
    if state.channel_error_for(channel) in ("channel_not_found", "not_in_channel"):
        raise ApiError(state.channel_error_for(channel))
    try:
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        limit = max(1, min(int(args.get("limit") or 100), 999))
        start = int(args.get("cursor") or 0)
    except ValueError:
        raise ApiError("invalid_arguments") from None
    with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
    found = [m for m in state.channel_history(channel) if oldest <= float(m.ts) <= latest]
    page = found[start:start + limit]
    messages = []
    for m in page:
        out = _message_json(state, m)
        if not with_metadata:
            out.pop("metadata", None)
        messages.append(out)
    more = start + limit < len(found)
    return {"messages": messages, "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""}}


def users_info(state: StandinState, args: dict, base_url: str) -> dict:
    (user,) = _require(args, "user")
    name = user.lower()
    return {
        "user": {
            "id": user,
            "team_id": state.team_id,
            "name": name,
            "real_name": name,
            "deleted": False,
            "is_bot": user == state.bot_user_id,
            "tz": "Europe/Stockholm",
            "profile": {"real_name": name, "display_name": name},
        }
    }


METHODS: dict[str, Callable[[StandinState, dict, str], dict]] = {
    "auth.test": auth_test,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.getPermalink": chat_get_permalink,
    "usergroups.users.list": usergroups_users_list,
    "conversations.info": conversations_info,
    "conversations.history": conversations_history,
    "users.info": users_info,
}


def _fault_reply(fault) -> Reply:
    if fault.status == 429:
        retry_after = 1 if fault.retry_after is None else fault.retry_after
        return Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
    if fault.status >= 500:
        return Reply(fault.status, HTTPStatus(fault.status).phrase)
    return Reply(fault.status, {"ok": False, "error": fault.error or "fatal_error"})


def call_api(state: StandinState, method: str, args: dict, token: str | None, base_url: str) -> Reply:
    """Answer one Web API call and record it."""
    with state.lock:
        at = time.time()
        fault = state.take_fault(method)
        if fault is not None:
            reply = _fault_reply(fault)
        elif method not in METHODS:
            reply = Reply(200, {"ok": False, "error": "unknown_method"})
        elif not token:
            reply = Reply(200, {"ok": False, "error": "not_authed"})
        elif token != state.bot_token:
            reply = Reply(200, {"ok": False, "error": "invalid_auth"})
        elif method == "chat.postMessage" and (wait := state.post_retry_after(str(args.get("channel")), at)):
            reply = Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)})
        else:
            try:
                reply = Reply(200, {"ok": True, **METHODS[method](state, args, base_url)})
            except ApiError as e:
                reply = Reply(200, {"ok": False, "error": e.error, **e.extra})
        error = None
        if isinstance(reply.body, str):
            error = reply.body
        elif not reply.body.get("ok"):
            error = reply.body.get("error")
        state.record(Call(method, args, token, at, reply.status, error))
        return reply


def post_response(state: StandinState, key: str, body: Any) -> Reply:
    """A POST to response_url(key): at most 5 uses; answers plain text as Slack does."""
    with state.lock:
        at = time.time()
        reply = _response(state, key, body)
        args = body if isinstance(body, dict) else {"_raw": body}
        error = None if reply.status == 200 else str(reply.body)
        state.record(Call("response_url", args, None, at, reply.status, error, key))
        return reply


def _response(state: StandinState, key: str, body: Any) -> Reply:
    if not state.use_response_url(key):
        return Reply(404, "used_url")
    if not isinstance(body, dict):
        return Reply(400, "invalid_payload")
    channel, message_ts = state.response_target(key)
    original = state.find(channel, message_ts) if channel and message_ts else None
    if body.get("delete_original") in (True, "true"):
        if original is not None:
            state.delete(channel, message_ts)
        state.add_response(key, body)
        return Reply(200, "ok")
    try:
        text, blocks = _content(body)
    except ApiError as e:
        return Reply(400, e.error)
    # replace_original on a channel message edits it; in_channel posts a new one.
    if body.get("replace_original") in (True, "true") and original is not None:
        state.update(original, text, blocks)
    elif body.get("response_type") == "in_channel" and channel:
        state.post(channel, text, blocks, body.get("thread_ts"))
    state.add_response(key, body)
    return Reply(200, "ok")
