"""Turn whatever Fortnox answered (or failed to answer) into one FortnoxError.

Fortnox's error shapes are only partly documented (reference §7), so parse_error accepts any body
and never raises: a parser crash would turn a Fortnox hiccup into a bot outage.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from bot.fortnox.codes import OAUTH_ERRORS, Category, rule_for_code, rule_for_text

MAX_PARSE_CHARS = 64 * 1024  # error bodies are tiny; anything longer is a page, not an envelope
EXCERPT_CHARS = 200
MAX_MESSAGE_CHARS = 500
_PLAIN_MESSAGE_CHARS = 1000  # a short non-JSON, non-HTML body is taken as Fortnox's text

_WS = re.compile(r"\s+")
_INT = re.compile(r"[+-]?\d{1,18}")
_XML_CODE = re.compile(r"<code>\s*([+-]?\d{1,18})\s*</code>", re.IGNORECASE)
_XML_MESSAGE = re.compile(r"<message>(.*?)</message>", re.IGNORECASE | re.DOTALL)

# Evidence must never carry credentials, even if Fortnox or a proxy echoes them back.
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}"), "[redacted-jwt]"),
    (re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE), r"\1 [redacted]"),
    (
        re.compile(
            r"((?:access|refresh|id)[_-]?token|client[_-]?secret|password|authorization|(?<![\w-])token)"
            r"(\"?\s*[:=]\s*\"?)[^\"&\s,;}]+",
            re.IGNORECASE,
        ),
        r"\1\2[redacted]",
    ),
)


@dataclass(frozen=True)
class FortnoxError:
    status: int | None  # HTTP status; None for transport failures
    code: int | None  # Fortnox code normalised to int
    message: str  # Fortnox's human text ('' if none); never a raw HTML page
    oauth_error: str | None  # RFC 6749 "error" value when present
    category: Category
    excerpt: str  # <= 200 chars of the raw body, whitespace collapsed, secrets redacted
    transport: str | None = None  # "timeout", "connect_error", ... when there was no response
    retry_after: float | None = None

    def describe(self) -> str:
        """One line for humans: 'HTTP 401, code 2000310: Ogiltig inloggning'."""
        head = []
        if self.transport:
            head.append(f"no response ({self.transport})")
        elif self.status is not None:
            head.append(f"HTTP {self.status}")
        if self.code is not None:
            head.append(f"code {self.code}")
        if self.oauth_error:
            head.append(self.oauth_error)
        text = ", ".join(head) or "no status"
        detail = self.message or self.excerpt
        return f"{text}: {detail}" if detail else text


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def parse_error(status: Any, body: Any, *, headers: Any = None, context: str = "api") -> FortnoxError:
    """Classify a Fortnox answer. context="token" for /token answers (OAuth rules apply)."""
    try:
        return _parse(status, body, headers, context)
    except Exception:  # noqa: BLE001 - last resort; the inputs are untrusted
        st = _safe(_status, status)
        category = Category.unavailable if st is not None and st >= 500 else Category.unknown
        return FortnoxError(st, None, "", None, category, "")


# Which httpx failures we name; order matters (ConnectTimeout is a TimeoutException first).
_TRANSPORT_NAMES: tuple[tuple[type[BaseException], str], ...] = (
    (httpx.TimeoutException, "timeout"),
    (httpx.ConnectError, "connect_error"),
    (httpx.ReadError, "read_error"),
    (httpx.WriteError, "write_error"),
    (httpx.ProxyError, "proxy_error"),
    (httpx.ProtocolError, "protocol_error"),
    (httpx.CloseError, "close_error"),
    (httpx.DecodingError, "decoding_error"),
    (httpx.TooManyRedirects, "too_many_redirects"),
    (httpx.UnsupportedProtocol, "unsupported_protocol"),
    (httpx.NetworkError, "network_error"),
    (httpx.TransportError, "transport_error"),
    (OSError, "os_error"),
)


def transport_error(exc: BaseException) -> FortnoxError:
    """A request that got no HTTP answer: Fortnox (or the path to it) is unavailable."""
    kind = next((name for cls, name in _TRANSPORT_NAMES if isinstance(exc, cls)), "error")
    detail = _safe(str, exc) or ""
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return FortnoxError(None, None, "", None, Category.unavailable, _excerpt(text), transport=kind)


# --- internals ---------------------------------------------------------------------------


@dataclass
class _Fields:
    code: int | None = None
    message: str = ""
    oauth_error: str | None = None
    text: str = ""  # every human-readable field joined, for the text rules
    envelope: bool = False  # an ErrorInformation-style wrapper was present


def _parse(status: Any, body: Any, headers: Any, context: str) -> FortnoxError:
    st = _status(status)
    raw, data = _decode(body)
    content_type = (_header(headers, "content-type") or "").lower()
    stripped = (raw or "").lstrip("\ufeff \t\r\n")
    is_xml = stripped[:5].lower() == "<?xml" or stripped[:17].lower() == "<errorinformation"
    is_html = not is_xml and ("html" in content_type or stripped.startswith("<"))

    if data is not None:
        fields = _json_fields(data)
    elif is_xml:
        fields = _xml_fields(stripped)
    elif raw and not is_html and len(stripped) <= _PLAIN_MESSAGE_CHARS:
        msg = _clean(stripped)
        fields = _Fields(message=msg, text=msg)
    else:
        fields = _Fields()

    category = _classify(st, fields, context)
    source = raw if raw is not None else _safe(_dump, data) or ""
    return FortnoxError(
        status=st,
        code=fields.code,
        message=redact(fields.message),  # shown in Slack: same secret hygiene as the excerpt
        oauth_error=fields.oauth_error,
        category=category,
        excerpt=_excerpt(source),
        retry_after=_retry_after(_header(headers, "retry-after")),
    )


def _classify(status: int | None, f: _Fields, context: str) -> Category:
    # Body before status (reference §0): code, then text, then OAuth error, then status.
    rule = rule_for_code(f.code)
    if rule:
        return rule.category
    rule = rule_for_text(f.text)
    if rule:
        # /token has no bearer to be "unauthorized": there it means our client credentials.
        if context == "token" and rule.category is Category.auth:
            return Category.invalid_client
        return rule.category
    if context == "token" and f.oauth_error:
        category = OAUTH_ERRORS.get(f.oauth_error.lower())
        if category:
            return category
    if status == 429:
        return Category.rate_limited
    if status is not None and status >= 500:
        return Category.unavailable
    if f.envelope and f.code is None:  # e.g. {"ErrorInformation":{"message":"Service unavailable"}} (F-D6)
        return Category.unavailable
    if status is None:
        return Category.unknown
    if 200 <= status < 300:
        return Category.ok
    if context == "token":
        return Category.invalid_client if status == 401 else (
            Category.bad_request if 400 <= status < 500 else Category.unknown
        )
    if status in (401, 403):  # Fortnox documents 403 as "failed authentication"; 401 seen too
        return Category.auth
    if status == 404:
        return Category.not_found
    if 400 <= status < 500:
        return Category.bad_request
    return Category.unknown


def _decode(body: Any) -> tuple[str | None, Any]:
    """-> (raw text for the excerpt or None, parsed JSON-ish data or None)."""
    if body is None:
        return "", None
    if isinstance(body, (dict, list)):
        return None, body
    if isinstance(body, (bytes, bytearray, memoryview)):
        chunk = bytes(body[: MAX_PARSE_CHARS * 4])
        text = chunk.decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        text = str(body)
    if len(text) > MAX_PARSE_CHARS:  # only excerpt it; a truncated JSON would not parse anyway
        return text[:MAX_PARSE_CHARS], None
    head = text.lstrip("\ufeff \t\r\n")[:1]
    if head in ("{", "[", '"'):
        try:
            data = json.loads(text.lstrip("\ufeff"))
        except (ValueError, RecursionError):
            return text, None
        if isinstance(data, str):  # a JSON string is just text
            return data, None
        if isinstance(data, (dict, list)):
            return text, data
    return text, None


def _json_fields(data: Any) -> _Fields:
    if isinstance(data, list):  # some proxies wrap errors in a list: use the first object
        data = next((x for x in data[:20] if isinstance(x, dict)), None)
    if not isinstance(data, dict):
        return _Fields()
    top = _lower(data)
    info, envelope = top, False
    for key in ("errorinformation", "error"):
        if isinstance(top.get(key), dict):
            info, envelope = _lower(top[key]), True
            break
    scopes = (info, top) if info is not top else (top,)
    code = next((c for d in scopes for k in ("code", "errorcode") if (c := _code(d.get(k))) is not None), None)
    texts = []
    for d in scopes:
        for k in ("message", "error_description", "errormessage", "description", "detail"):
            t = _clean(d.get(k))
            if t and t not in texts:
                texts.append(t)
    oauth = next((e for d in scopes if (e := _clean(d.get("error")))), None)
    if oauth is not None and _INT.fullmatch(oauth):  # Fortnox's "Error": 1 is a flag, not an OAuth error
        oauth = None
    message = texts[0][:MAX_MESSAGE_CHARS] if texts else ""
    text = " | ".join(texts + ([oauth] if oauth else []))
    return _Fields(code=code, message=message, oauth_error=oauth, text=text, envelope=envelope)


def _xml_fields(text: str) -> _Fields:
    code_m = _XML_CODE.search(text)
    msg_m = _XML_MESSAGE.search(text)
    message = _clean(msg_m.group(1))[:MAX_MESSAGE_CHARS] if msg_m else ""
    code = _code(code_m.group(1)) if code_m else None
    envelope = "<errorinformation" in text[:2000].lower()
    return _Fields(code=code, message=message, text=message, envelope=envelope)


def _lower(d: dict) -> dict:
    return {k.lower(): v for k, v in d.items() if isinstance(k, str)}


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _clean(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return _WS.sub(" ", value[: MAX_MESSAGE_CHARS * 4]).strip()
    return ""


def _status(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 1000 else None
    if isinstance(value, str) and value.strip().isdigit():
        return _status(int(value.strip()))
    return None


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    try:
        pairs = headers.items() if hasattr(headers, "items") else headers
        for key, value in pairs:
            if isinstance(key, bytes):
                key = key.decode("latin-1")
            if isinstance(key, str) and key.lower() == name:
                return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    except Exception:  # noqa: BLE001 - odd header containers are just ignored
        return None
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:  # the HTTP-date form
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)[: MAX_PARSE_CHARS]


def _excerpt(text: str) -> str:
    text = redact(_WS.sub(" ", text[:8192]).strip())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return None
