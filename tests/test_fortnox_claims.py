"""Offline decoding of Fortnox access tokens (reference §5)."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime, timezone

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.fortnox.claims import Claims, decode_claims, looks_like_jwt

KEY = "test-only-hmac-key-not-fortnox-0123456789"  # >= 32 bytes: no PyJWT key warning
RIGHTS = ["bf.voucher", "kf.invoice", "lon.run"]


def rights_claim(items) -> str:
    return base64.b64encode(gzip.compress(json.dumps(items).encode())).decode()  # standard, padded


def fortnox_token(**overrides) -> str:
    """Shaped like the real (expired) tokens in public test files: numbers for ids, HS256, no kid."""
    payload = {
        "iss": "https://api.fortnox.se/oauth2",
        "aud": "8VurtMGDTeAI",
        "clientId": "8VurtMGDTeAI",
        "sub": "10@1234567",
        "tenantId": 1234567,
        "userId": 10,
        "authsource": "OAUTH2",
        "scopes": ["companyinformation", "invoice"],
        "scope": "companyinformation invoice",
        "rightsAsJson": rights_claim(RIGHTS),
        "id": "c7f3f5c2",
        "jti": "c7f3f5c2",
        "token_type": "bearer",
        "iat": 1735689600,
        "exp": 1735693200,
    }
    payload.update(overrides)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, KEY, algorithm="HS256")


def test_decode_real_shape():
    c = decode_claims(fortnox_token())
    assert isinstance(c, Claims)
    assert c.tenant_id == "1234567" and c.user_id == "10"
    assert c.client_id == "8VurtMGDTeAI"
    assert c.scopes == frozenset({"companyinformation", "invoice"})
    assert c.iat == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert c.exp == datetime(2025, 1, 1, 1, tzinfo=timezone.utc)
    assert c.exp.tzinfo is not None
    assert c.rights == tuple(RIGHTS)
    assert {"tenantId", "rightsAsJson", "authsource"} <= c.raw_keys


def test_expired_token_still_decodes():
    assert decode_claims(fortnox_token(exp=1)) is not None  # expiry is evidence, not a reason to refuse


def test_scope_string_only_and_aud_fallback():
    c = decode_claims(fortnox_token(scopes=None, scope="companyinformation,bookkeeping", clientId=None, aud=["app-x"]))
    assert c.scopes == frozenset({"companyinformation", "bookkeeping"})
    assert c.client_id == "app-x"


def test_ids_from_sub_when_missing():
    c = decode_claims(fortnox_token(tenantId=None, userId=None, sub="42@7654321"))
    assert (c.user_id, c.tenant_id) == ("42", "7654321")


def test_string_and_float_ids_normalised():
    assert decode_claims(fortnox_token(tenantId="1234567")).tenant_id == "1234567"
    assert decode_claims(fortnox_token(tenantId=1234567.0)).tenant_id == "1234567"
    assert decode_claims(fortnox_token(tenantId=True, sub=None)).tenant_id is None


def test_missing_optional_claims():
    token = jwt.encode({"foo": "bar"}, KEY, algorithm="HS256")
    c = decode_claims(token)
    assert c == Claims(None, None, None, frozenset(), None, None, (), frozenset({"foo"}))


@pytest.mark.parametrize(
    "rights",
    [
        "not base64 at all!!",
        base64.b64encode(b"not gzip").decode(),
        base64.b64encode(gzip.compress(b"{not json")).decode(),
        base64.b64encode(gzip.compress(b'{"a": 1}')).decode(),
        "",
        12345,
    ],
)
def test_garbage_rights_give_empty(rights):
    c = decode_claims(fortnox_token(rightsAsJson=rights))
    assert c is not None and c.rights == ()


def test_rights_without_padding_and_rights_claim_fallback():
    unpadded = rights_claim(["a.b"]).rstrip("=")
    assert decode_claims(fortnox_token(rightsAsJson=unpadded)).rights == ("a.b",)
    assert decode_claims(fortnox_token(rightsAsJson=None, rights=rights_claim(["x.y"]))).rights == ("x.y",)


def test_rights_gzip_bomb_is_refused():
    bomb = base64.b64encode(gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")).decode()
    assert decode_claims(fortnox_token(rightsAsJson=bomb)).rights == ()


def test_weird_time_claims():
    c = decode_claims(fortnox_token(exp="1735693200", iat=10**20))
    assert c.exp == datetime(2025, 1, 1, 1, tzinfo=timezone.utc)
    assert c.iat is None


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "6f2c7b1e-1234-4d6c-9a5e-0123456789ab", "a.b.c", "eyJ.eyJ.", "Bearer x.y.z", 42, b"abc",
     "x" * 100_000, "e30.bm90IGpzb24.sig"],
)
def test_not_a_jwt(value):
    assert decode_claims(value) is None


def test_looks_like_jwt():
    assert looks_like_jwt(fortnox_token())
    assert not looks_like_jwt("6f2c7b1e-1234-4d6c-9a5e-0123456789ab")  # a legacy access token
    assert not looks_like_jwt(" " + fortnox_token())
    assert not looks_like_jwt(None)
    assert not looks_like_jwt("abc.def.ghi")  # header is not JSON


def test_payload_not_object_is_none():
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=").decode()
    assert decode_claims(f"{header}.{payload}.c2ln") is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=100) | st.none() | st.integers())
def test_decode_never_raises(value):
    assert decode_claims(value) is None or isinstance(decode_claims(value), Claims)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["tenantId", "userId", "clientId", "aud", "sub", "scopes", "scope", "exp", "iat",
                         "rightsAsJson", "rights"]),
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
        | st.lists(st.text(max_size=5) | st.integers(), max_size=3),
    )
)
def test_decode_any_claim_values(payload):
    token = jwt.encode(payload, KEY, algorithm="HS256")
    c = decode_claims(token)
    assert c is not None
    assert c.tenant_id is None or isinstance(c.tenant_id, str)
    assert all(isinstance(s, str) for s in c.scopes)
