"""`POST /webhooks/export-failure`: Standard Webhooks signature, strict parsing, idempotent ingest, 202 at once.

Checks run cheapest-first and before anything is stored: size (413, without reading past the limit),
signature (401), content type (415), JSON shape (400). No input can produce a 500.
"""
from __future__ import annotations

import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from standardwebhooks.webhooks import Webhook
from starlette.requests import Request
from starlette.responses import JSONResponse

from bot import metrics

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
MAX_STORED_BODY = 8 * 1024
EVENT_TYPES = ("export.failed", "export.succeeded")
SIGNATURE_WINDOW = 300          # seconds, both ways (Standard Webhooks)
FUTURE_SKEW = timedelta(minutes=10)   # clocks differ a little; signatures already allow 5 minutes


class BadEvent(ValueError):
    """The body is signed but not an export event; the message says what is wrong."""


@dataclass(frozen=True)
class ExportEventIn:
    id: str
    type: str
    tenant: str
    occurred_at: datetime
    kind: str | None
    ref: str | None
    fortnox_status: int | None
    fortnox_body: str          # JSON text of whatever Fortnox answered ("" when absent)


def _text(data: dict, key: str, *, required: bool, limit: int = 200, where: str = "") -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    name = f"`{where}{key}`"
    if not isinstance(value, str) or not value.strip():
        raise BadEvent(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise BadEvent(f"{name} is longer than {limit} characters")
    if "\x00" in value:   # PostgreSQL cannot store it, and no id, tenant or ref has one
        raise BadEvent(f"{name} must not contain NUL characters")
    return value.strip()


def parse_event(data: Any) -> ExportEventIn:
    if not isinstance(data, dict):
        raise BadEvent("the body must be a JSON object")
    event_id = _text(data, "id", required=True)
    event_type = _text(data, "type", required=True, limit=40)
    if event_type not in EVENT_TYPES:
        raise BadEvent(f"`type` must be one of {', '.join(EVENT_TYPES)}")
    tenant = _text(data, "tenant", required=True)
    raw_when = _text(data, "occurred_at", required=True, limit=64)
    try:
        when = datetime.fromisoformat(raw_when.replace("Z", "+00:00"))
    except ValueError:
        raise BadEvent("`occurred_at` must be an ISO 8601 time") from None
    if when.tzinfo is None:
        raise BadEvent("`occurred_at` needs a UTC offset (e.g. 2026-12-03T14:02:11Z)")
    if when > datetime.now(timezone.utc) + FUTURE_SKEW:
        # A future time would outrank every later event and block recovery by export.succeeded.
        raise BadEvent("`occurred_at` is in the future")
    export = data.get("export")
    if export is not None and not isinstance(export, dict):
        raise BadEvent("`export` must be an object")
    export = export or {}
    kind = _text(export, "kind", required=False, limit=64, where="export.")
    ref = _text(export, "ref", required=False, limit=500, where="export.")
    fortnox = data.get("fortnox")
    if fortnox is not None and not isinstance(fortnox, dict):
        raise BadEvent("`fortnox` must be an object")
    fortnox = fortnox or {}
    status = fortnox.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599):
        raise BadEvent("`fortnox.status` must be an HTTP status code")
    body = fortnox.get("body")
    body_text = "" if body is None else (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False))
    body_text = body_text.replace("\x00", "\ufffd")   # Fortnox's answer is kept as evidence; PostgreSQL refuses NUL
    return ExportEventIn(event_id, event_type, tenant, when.astimezone(timezone.utc), kind.lower() if kind else None,
                         ref, status, body_text[:MAX_STORED_BODY])


def signature_ok(secret: str, body: bytes, headers) -> bool:
    """Standard Webhooks check (HMAC-SHA256, 300 s window both ways, constant-time compare). Never raises.

    The signature is compared as text, not as decoded bytes: lenient base64 decoding would accept a
    signature whose last character differs only in padding bits (F-S7 wants that refused too).
    """
    msg_id, stamp, signatures = (headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        return False
    try:
        sent_at = int(stamp)   # integer seconds, as the spec says
        if abs(time.time() - sent_at) > SIGNATURE_WINDOW:
            return False
        expected = Webhook(secret).sign(msg_id, datetime.fromtimestamp(sent_at, timezone.utc), body.decode("utf-8"))
        return any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in signatures.split(" "))
    except Exception:   # malformed headers, a non-UTF-8 body, an unusable secret: all simply "not verified"
        return False


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` (never buffering a huge body)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, body: dict, why: str) -> JSONResponse:
    metrics.WEBHOOKS.labels(str(status)).inc()
    if status >= 400:
        log.info("export webhook refused: %d %s", status, why)
    return JSONResponse(body, status_code=status)


async def export_failure(request: Request) -> JSONResponse:
    bot = request.app.state.bot
    body = await read_limited(request)
    if body is None:
        return _answer(413, {"error": f"body larger than {MAX_BODY // 1024} KiB"}, "too large")
    if not signature_ok(bot.settings.export_webhook_secret, body, request.headers):
        return _answer(401, {"error": "missing or invalid webhook signature"}, "bad signature")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        return _answer(415, {"error": "Content-Type must be application/json"}, f"content type {ctype!r}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _answer(400, {"error": "body is not valid JSON"}, "not JSON")
    try:
        event = parse_event(data)
    except BadEvent as exc:
        return _answer(400, {"error": str(exc)}, str(exc))
    try:
        result = await bot.intake.submit(event)
    except Exception as exc:
        # Not the sender's fault and nothing half-stored (one transaction): ask for a redelivery.
        log.error("export webhook %s not stored: %s", event.id, type(exc).__name__)
        metrics.WEBHOOKS.labels("503").inc()
        return JSONResponse({"error": "the bot cannot store events right now; please redeliver later"},
                            status_code=503, headers={"Retry-After": "30"})
    if not result.duplicate:
        bot.worker.notify()
    return _answer(202, {"incident": result.incident_id, "duplicate": result.duplicate}, "")
