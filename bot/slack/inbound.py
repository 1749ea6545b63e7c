"""Checks on `POST /slack/events` around Bolt, which answers 500 to bodies it cannot read.

Bolt buffers any body whole, raises on a timestamp that is not a number, on a body that is not UTF-8,
and on a `payload` that is not a JSON object (before it even checks the signature). So, in order: size
(413 without reading past the limit), the timestamp's shape (401, as for any bad signature), then the
body's shape (401 if the signature is wrong too, else 400). Bolt verifies the signature of the rest.
"""
from __future__ import annotations

import logging
import re

from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.webhooks.export import read_limited

log = logging.getLogger(__name__)

# Interactive payloads carry the whole message (≤ 50 blocks of ≤ 3000 characters) and view state; real ones
# stay well under this.
MAX_SLACK_BODY = 1024 * 1024
_TIMESTAMP = re.compile(r"\s*\d{1,12}\s*")


def _refuse(status: int, error: str, why: str) -> JSONResponse:
    log.info("slack request refused: %d %s", status, why)
    return JSONResponse({"error": error}, status_code=status)


def _readable(body: bytes, content_type: str | None) -> bool:
    """Would Bolt's own parser turn this body into a dict? (It decodes UTF-8 and parses as below.)"""
    try:
        return isinstance(parse_body(body.decode("utf-8"), content_type), dict)
    except (ValueError, RecursionError):   # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False


def refuse_unreadable(signing_secret: str, body: bytes, headers) -> JSONResponse:
    """A body Bolt cannot use: 401 when its signature is wrong as well (say nothing more), else 400."""
    try:
        signed = SignatureVerifier(signing_secret).is_valid(
            body, headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature"))
    except ValueError:   # no signing secret (Socket Mode), or an unreadable timestamp
        signed = False
    if not signed:
        return _refuse(401, "invalid request", "bad signature on an unreadable body")
    return _refuse(400, "unreadable request body", "signed but not a Slack payload")


async def checked(request: Request, signing_secret: str) -> Request | Response:
    """A request Bolt can read (its body replayed from memory), or the answer that refuses it."""
    body = await read_limited(request, MAX_SLACK_BODY)
    if body is None:
        return _refuse(413, "body too large", f"body over {MAX_SLACK_BODY // 1024} KiB")
    timestamp = request.headers.get("x-slack-request-timestamp")
    if timestamp is not None and not _TIMESTAMP.fullmatch(timestamp):
        return _refuse(401, "invalid request", "malformed X-Slack-Request-Timestamp")   # Bolt's bad-signature answer
    if not _readable(body, request.headers.get("content-type")):
        return refuse_unreadable(signing_secret, body, request.headers)

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(request.scope, replay)
    request.state.raw_body = body
    return request
