"""Offline reading of Fortnox access tokens (JWT, HS256, reference §5).

Fortnox publishes no key, so the signature cannot be checked: these claims are evidence for
diagnosis (expiry, scopes, tenant, client), never proof of anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import jwt

from bot.fortnox.scopes import parse_scopes

_MAX_TOKEN_CHARS = 64 * 1024  # real tokens are 2.6-3.8 KB
_MAX_RIGHTS_BYTES = 1024 * 1024  # guard against a gzip bomb in a forged token
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_DECODE_OPTIONS = {
    "verify_signature": False,
    "verify_exp": False,
    "verify_aud": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_iss": False,
}


@dataclass(frozen=True)
class Claims:
    tenant_id: str | None  # Fortnox company id (= DatabaseNumber); a JSON number in real tokens
    user_id: str | None
    client_id: str | None  # which integration the token belongs to
    scopes: frozenset[str]
    exp: datetime | None  # UTC aware
    iat: datetime | None
    rights: tuple[str, ...]  # the user's rights when the token was issued (a snapshot)
    raw_keys: frozenset[str]


def looks_like_jwt(s: Any) -> bool:
    """Three base64url segments whose first decodes to a JSON object (a legacy token is a bare UUID)."""
    if not isinstance(s, str) or len(s) > _MAX_TOKEN_CHARS or not _JWT_SHAPE.fullmatch(s):
        return False
    try:
        header = json.loads(_b64decode(s.split(".", 1)[0], urlsafe=True))
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict)


def decode_claims(token: Any) -> Claims | None:
    """Claims of a Fortnox JWT, or None for anything that is not a decodable JWT. Never raises."""
    if not looks_like_jwt(token):
        return None
    try:
        payload = jwt.decode(token, options=_DECODE_OPTIONS)
    except Exception:  # noqa: BLE001 - any undecodable token is just "not a JWT"
        return None
    if not isinstance(payload, dict):
        return None
    try:
        return _claims(payload)
    except Exception:  # noqa: BLE001 - odd claim values must not crash diagnosis
        return None


def _claims(p: dict) -> Claims:
    sub_user, sub_tenant = _split_sub(p.get("sub"))
    return Claims(
        tenant_id=_id(p.get("tenantId")) or sub_tenant,
        user_id=_id(p.get("userId")) or sub_user,
        client_id=_id(p.get("clientId")) or _aud(p.get("aud")),
        scopes=_scopes(p.get("scopes")) or _scopes(p.get("scope")),
        exp=_time(p.get("exp")),
        iat=_time(p.get("iat")),
        rights=_rights(p.get("rightsAsJson")) or _rights(p.get("rights")),
        raw_keys=frozenset(k for k in p if isinstance(k, str)),
    )


def _id(value: Any) -> str | None:
    # tenantId/userId are JSON numbers; compare as strings everywhere.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return str(int(value)) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, (int, str)):
        text = str(value).strip()
        return text or None
    return None


def _split_sub(sub: Any) -> tuple[str | None, str | None]:
    # sub = "<userId>@<tenantId>"; a fallback when the explicit claims are missing.
    if isinstance(sub, str) and sub.count("@") == 1:
        user, tenant = (part.strip() or None for part in sub.split("@"))
        return user, tenant
    return None, None


def _aud(value: Any) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v), None)
    return _id(value) if isinstance(value, str) else None


def _scopes(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return parse_scopes(value)
    if isinstance(value, list):
        return frozenset(s.strip() for s in value if isinstance(s, str) and s.strip())
    return frozenset()


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _rights(value: Any) -> tuple[str, ...]:
    """gzip + padded base64 of a JSON list; garbage gives ()."""
    if isinstance(value, list):  # tolerate an already-decoded list
        items = value
    elif isinstance(value, str) and value.strip():
        try:
            raw = _b64decode(value.strip(), urlsafe="-" in value or "_" in value)
            items = json.loads(_gunzip(raw))
        except (ValueError, binascii.Error, OSError, EOFError, zlib.error):
            return ()
    else:
        return ()
    if not isinstance(items, list):
        return ()
    return tuple(str(i) for i in items if isinstance(i, (str, int)) and not isinstance(i, bool))


def _b64decode(text: str, *, urlsafe: bool) -> bytes:
    padded = text + "=" * (-len(text) % 4)  # JWT segments drop the padding
    return base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)


def _gunzip(data: bytes) -> bytes:
    # Bounded decompression: never inflate more than _MAX_RIGHTS_BYTES.
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data, _MAX_RIGHTS_BYTES)
    if d.unconsumed_tail:
        raise ValueError("rights claim too large")
    return out
