"""FortnoxClient against respx-mocked Fortnox, plus scopes and the rate limiter."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.fortnox import (
    ALL_SCOPES,
    KIND_SCOPES,
    PROBE_SCOPE,
    SCOPE_PROBE_PATHS,
    Category,
    FortnoxClient,
    RateLimiter,
    needed_scopes,
    parse_scopes,
)

AUTH = "https://apps.fortnox.test/oauth-v1"
API = "https://api.fortnox.test/3"
REDIRECT = "https://bot.example.test/oauth/fortnox/callback"
CLIENT_ID = "client-id-123"
CLIENT_SECRET = "client-secret-XYZ-987"
ACCESS = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0ZW5hbnRJZCI6MTIzNDU2N30.access-signature-AAAA"
REFRESH = "refresh-5c1d2e3f-aaaa-bbbb-cccc-0123456789ab"
NEW_ACCESS = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0ZW5hbnRJZCI6MTIzNDU2OH0.new-access-signature"
NEW_REFRESH = "refresh-new-9999-8888-7777-666655554444"
HTML_503 = "<html><head><title>503 Service Unavailable</title></head><body><h1>Underhåll pågår</h1></body></html>"


def make_client(**kw) -> FortnoxClient:
    kw.setdefault("limiter", RateLimiter(1000, 1.0))
    return FortnoxClient(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_url=AUTH + "/", api_url=API + "/", redirect_uri=REDIRECT, **kw
    )


@pytest.fixture
async def client():
    async with make_client() as c:
        yield c


def token_json(**overrides):
    body = {
        "access_token": NEW_ACCESS,
        "refresh_token": NEW_REFRESH,
        "scope": "companyinformation invoice",
        "expires_in": 3600,
        "token_type": "bearer",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


# --- scopes -----------------------------------------------------------------------------------


def test_kind_scopes_match_contract():
    assert KIND_SCOPES == {
        "invoice": "invoice", "customer": "customer", "article": "article", "voucher": "bookkeeping",
        "payment": "payment", "costcenter": "costcenter", "supplierinvoice": "supplierinvoice",
        "supplier": "supplier", "order": "order", "offer": "offer", "project": "project", "salary": "salary",
    }
    assert PROBE_SCOPE == "companyinformation"


def test_all_scopes_and_probe_paths():
    assert len(ALL_SCOPES) == 23 and "noxfinansinvoice" in ALL_SCOPES
    assert set(KIND_SCOPES.values()) | {PROBE_SCOPE, "profile", "settings"} == set(SCOPE_PROBE_PATHS)
    assert set(SCOPE_PROBE_PATHS) <= ALL_SCOPES
    assert SCOPE_PROBE_PATHS["bookkeeping"] == "/vouchers" and SCOPE_PROBE_PATHS["profile"] == "/me"
    assert all(p.startswith("/") for p in SCOPE_PROBE_PATHS.values())


def test_needed_scopes():
    assert needed_scopes([]) == {"companyinformation"}
    assert needed_scopes(["voucher", "invoice", "invoice"]) == {"companyinformation", "bookkeeping", "invoice"}
    assert needed_scopes("salary") == {"companyinformation", "salary"}
    with pytest.raises(ValueError, match="vouchers"):
        needed_scopes(["invoice", "vouchers"])


def test_parse_scopes():
    assert parse_scopes("companyinformation invoice") == {"companyinformation", "invoice"}
    assert parse_scopes(" a,b ,  c\n") == {"a", "b", "c"}
    assert parse_scopes("") == frozenset() and parse_scopes(None) == frozenset()
    assert parse_scopes("Invoice") == {"Invoice"}  # case-sensitive: no folding


# --- consent link -----------------------------------------------------------------------------


def test_consent_url_exact_query(client):
    url = client.consent_url(state="st-1/2+3", scopes=["invoice", "companyinformation", "bookkeeping"])
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTH + "/auth"
    assert "scope=bookkeeping%20companyinformation%20invoice" in parts.query  # %20, sorted, never '+'
    assert "+" not in parts.query
    q = parse_qs(parts.query)
    assert q == {
        "client_id": [CLIENT_ID],
        "response_type": ["code"],
        "scope": ["bookkeeping companyinformation invoice"],
        "state": ["st-1/2+3"],
        "redirect_uri": [REDIRECT],
        "access_type": ["offline"],
    }


def test_consent_url_service_account_and_string_scopes(client):
    q = parse_qs(urlsplit(client.consent_url(state="s", scopes="invoice,companyinformation", service_account=True)).query)
    assert q["account_type"] == ["service"]
    assert q["scope"] == ["companyinformation invoice"]
    with pytest.raises(ValueError):
        client.consent_url(state="s", scopes=[])


# --- token endpoint ---------------------------------------------------------------------------


async def test_refresh_success_basic_auth_and_form(client, respx_mock):
    route = respx_mock.post(AUTH + "/token").mock(return_value=httpx.Response(200, json=token_json(token_type="Bearer")))
    before = datetime.now(timezone.utc)
    result = await client.refresh(REFRESH)
    assert result.ok and result.error is None
    t = result.tokens
    assert (t.access_token, t.refresh_token, t.token_type) == (NEW_ACCESS, NEW_REFRESH, "bearer")
    assert t.scopes == {"companyinformation", "invoice"}
    assert t.expires_at.tzinfo is not None
    assert before + timedelta(seconds=3590) <= t.expires_at <= datetime.now(timezone.utc) + timedelta(seconds=3600)

    request = route.calls.last.request
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert request.headers["Authorization"] == expected
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(request) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH]}  # no credentials in the body


async def test_exchange_code_uses_same_redirect_uri(client, respx_mock):
    route = respx_mock.post(AUTH + "/token").mock(return_value=httpx.Response(200, json=token_json()))
    result = await client.exchange_code("auth-code-1")
    assert result.ok
    assert form(route.calls.last.request) == {
        "grant_type": ["authorization_code"], "code": ["auth-code-1"], "redirect_uri": [REDIRECT],
    }


async def test_client_credentials_sends_tenant_header(client, respx_mock):
    body = token_json(refresh_token=None, scope=None, expires_in=None)
    route = respx_mock.post(AUTH + "/token").mock(return_value=httpx.Response(200, json=body))
    result = await client.client_credentials("1234567")
    req = route.calls.last.request
    assert req.headers["TenantId"] == "1234567"
    assert form(req) == {"grant_type": ["client_credentials"]}
    t = result.tokens
    assert t.refresh_token is None
    assert abs((t.expires_at - datetime.now(timezone.utc)).total_seconds() - 3600) < 60  # expires_in missing -> 3600
    assert t.scopes == frozenset()  # no scope field and the JWT carries none


async def test_scopes_fall_back_to_jwt(client, respx_mock):
    import jwt as pyjwt

    access = pyjwt.encode({"scopes": ["companyinformation", "salary"]}, "k" * 32, algorithm="HS256")
    respx_mock.post(AUTH + "/token").mock(return_value=httpx.Response(200, json=token_json(access_token=access, scope=None)))
    assert (await client.refresh(REFRESH)).tokens.scopes == {"companyinformation", "salary"}


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={"refresh_token": NEW_REFRESH, "expires_in": 3600}),
        httpx.Response(200, text="<html>ok</html>"),
        httpx.Response(200, content=b""),
        httpx.Response(200, json=token_json(token_type="mac")),
        httpx.Response(200, json=["not", "an", "object"]),
    ],
)
async def test_success_without_usable_token_is_unavailable(client, respx_mock, response):
    respx_mock.post(AUTH + "/token").mock(return_value=response)
    result = await client.refresh(REFRESH)
    assert not result.ok and result.tokens is None
    assert result.error.category is Category.unavailable
    assert NEW_REFRESH not in result.error.excerpt


async def test_F_D2_token_503_html(client, respx_mock):
    respx_mock.post(AUTH + "/token").mock(return_value=httpx.Response(503, text=HTML_503, headers={"Content-Type": "text/html"}))
    result = await client.refresh(REFRESH)
    assert result.error.category is Category.unavailable
    assert result.error.status == 503 and result.error.message == ""
    assert 0 < len(result.error.excerpt) <= 200


async def test_F_D2_token_connect_timeout(client, respx_mock):
    respx_mock.post(AUTH + "/token").mock(side_effect=httpx.ConnectTimeout("timed out"))
    result = await client.refresh(REFRESH)
    assert result.tokens is None
    assert result.error.category is Category.unavailable
    assert result.error.transport == "timeout" and result.error.status is None


async def test_F_D2_token_401_invalid_client(client, respx_mock):
    respx_mock.post(AUTH + "/token").mock(return_value=httpx.Response(401, json={"error": "invalid_client"}))
    result = await client.refresh(REFRESH)
    assert result.error.category is Category.invalid_client
    assert result.error.oauth_error == "invalid_client"


@pytest.mark.parametrize(
    "status, body",
    [
        (400, {"message": "Invalid refresh token"}),
        (401, {"error": "invalid_grant", "error_description": "Invalid refresh token"}),
        (400, {"error": "invalid_grant"}),
    ],
)
async def test_invalid_refresh_token(client, respx_mock, status, body):
    respx_mock.post(AUTH + "/token").mock(return_value=httpx.Response(status, json=body))
    assert (await client.refresh(REFRESH)).error.category is Category.invalid_refresh


async def test_revoke(client, respx_mock):
    route = respx_mock.post(AUTH + "/revoke").mock(return_value=httpx.Response(200, json={"revoked": True}))
    assert await client.revoke(REFRESH) is True
    req = route.calls.last.request
    assert form(req) == {"token_type_hint": ["refresh_token"], "token": [REFRESH]}
    assert req.headers["Authorization"].startswith("Basic ")

    route.mock(return_value=httpx.Response(200, json={"revoked": False}))
    assert await client.revoke(REFRESH) is False
    route.mock(return_value=httpx.Response(400, json={"message": "Invalid refresh token"}))
    assert await client.revoke(REFRESH) is False
    route.mock(side_effect=httpx.ConnectError("refused"))
    assert await client.revoke(REFRESH) is False


# --- REST GET ---------------------------------------------------------------------------------


class SpyLimiter(RateLimiter):
    def __init__(self):
        super().__init__(1000, 1.0)
        self.keys: list[str] = []
        self.penalties: list[tuple[str, float]] = []

    async def acquire(self, key):
        self.keys.append(key)
        await super().acquire(key)

    def penalise(self, key, seconds):
        self.penalties.append((key, seconds))
        super().penalise(key, seconds)


async def test_get_headers_limiter_and_data(respx_mock):
    limiter = SpyLimiter()
    body = {"CompanyInformation": {"CompanyName": "Acme AB", "DatabaseNumber": 1234567}}
    route = respx_mock.get(API + "/companyinformation").mock(return_value=httpx.Response(200, json=body))
    async with make_client(limiter=limiter) as c:
        result = await c.get("/companyinformation", access_token=ACCESS, limit_key="tenant-acme")
    assert result.ok and result.status == 200 and result.data == body and result.elapsed >= 0
    h = route.calls.last.request.headers
    assert h["Authorization"] == f"Bearer {ACCESS}"
    assert h["Accept"] == "application/json" and h["Content-Type"] == "application/json"
    assert limiter.keys == ["tenant-acme"]


async def test_get_error_classified(client, respx_mock):
    body = {"ErrorInformation": {"error": 1, "message": "Det finns ingen aktiv licens för önskat scope", "code": 2001101}}
    respx_mock.get(API + "/invoices").mock(return_value=httpx.Response(400, json=body))
    result = await client.get("invoices", access_token=ACCESS, limit_key="t")
    assert not result.ok and result.status == 400 and result.data is None
    assert (result.error.code, result.error.category) == (2001101, Category.license)


async def test_F_D6_unauthorized_via_get(client, respx_mock):
    respx_mock.get(API + "/companyinformation").mock(return_value=httpx.Response(401, json={"message": "unauthorized"}))
    result = await client.get("/companyinformation", access_token=ACCESS, limit_key="t")
    assert result.error.category is Category.auth


async def test_get_429_retry_after_zero_then_success(respx_mock):
    limiter = SpyLimiter()
    route = respx_mock.get(API + "/invoices").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={"Invoices": []})]
    )
    async with make_client(limiter=limiter) as c:
        result = await c.get("/invoices", access_token=ACCESS, limit_key="acme")
    assert result.ok and result.data == {"Invoices": []}
    assert route.call_count == 2
    assert limiter.keys == ["acme", "acme"]  # the retry goes through the limiter too


async def test_get_429_gives_up_after_max_retries(respx_mock):
    route = respx_mock.get(API + "/invoices").mock(return_value=httpx.Response(429, headers={"Retry-After": "0"}))
    async with make_client(max_429_retries=2) as c:
        result = await c.get("/invoices", access_token=ACCESS, limit_key="acme")
    assert route.call_count == 3
    assert result.status == 429 and result.error.category is Category.rate_limited


async def test_get_429_retry_after_too_long_is_not_waited(respx_mock):
    limiter = SpyLimiter()
    route = respx_mock.get(API + "/invoices").mock(return_value=httpx.Response(429, headers={"Retry-After": "120"}))
    async with make_client(limiter=limiter, max_retry_after=0.5) as c:
        started = time.monotonic()
        result = await c.get("/invoices", access_token=ACCESS, limit_key="acme")
    assert time.monotonic() - started < 1.0
    assert route.call_count == 1
    assert result.error.category is Category.rate_limited and result.error.retry_after == 120
    assert limiter.penalties == [("acme", 0.5)]  # the tenant backs off, capped at what we wait


async def test_get_429_without_retry_after_backs_off(respx_mock, monkeypatch):
    monkeypatch.setattr("bot.fortnox.client._BACKOFF_BASE", 0.01)
    route = respx_mock.get(API + "/x").mock(side_effect=[httpx.Response(429), httpx.Response(200, json={})])
    async with make_client() as c:
        result = await c.get("/x", access_token=ACCESS, limit_key="k")
    assert result.ok and route.call_count == 2


@pytest.mark.parametrize(
    "response, ok, category",
    [
        (httpx.Response(204), True, None),
        (httpx.Response(200, text=HTML_503), False, Category.unavailable),
        (httpx.Response(500, content=b""), False, Category.unavailable),
        (httpx.Response(503, text=HTML_503), False, Category.unavailable),
    ],
)
async def test_get_odd_answers(client, respx_mock, response, ok, category):
    respx_mock.get(API + "/companyinformation").mock(return_value=response)
    result = await client.get("/companyinformation", access_token=ACCESS, limit_key="t")
    assert result.ok is ok
    assert (result.error.category if result.error else None) is category


@pytest.mark.parametrize("exc", [httpx.ConnectTimeout("t"), httpx.ReadTimeout("t"), httpx.ConnectError("refused"),
                                 httpx.RemoteProtocolError("eof")])
async def test_get_transport_errors(client, respx_mock, exc):
    respx_mock.get(API + "/companyinformation").mock(side_effect=exc)
    result = await client.get("/companyinformation", access_token=ACCESS, limit_key="t")
    assert result.status is None and result.error.category is Category.unavailable and result.error.transport


async def test_custom_transport_is_used():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"ok": 1})

    async with make_client(transport=httpx.MockTransport(handler)) as c:
        assert (await c.get("/me", access_token=ACCESS, limit_key="t")).data == {"ok": 1}
    assert seen == ["/3/me"]


# --- secrets never leak ---------------------------------------------------------------------


async def test_tokens_never_in_logs_or_errors(respx_mock, caplog, monkeypatch):
    monkeypatch.setattr("bot.fortnox.client._BACKOFF_BASE", 0.01)
    caplog.set_level(logging.DEBUG)
    # Worst case: Fortnox (or a proxy) echoes the credentials the call sent, in any form.
    echo = f"Authorization: Bearer {ACCESS} refresh_token={REFRESH} token {REFRESH} secret {CLIENT_SECRET} {ACCESS}"
    api_echo = f"Authorization: Bearer {ACCESS} refresh_token={REFRESH} plain {ACCESS}"
    token_route = respx_mock.post(AUTH + "/token")
    api_route = respx_mock.get(API + "/companyinformation")
    errors = []
    async with make_client() as c:
        for status, body in [(400, {"message": echo}), (401, echo), (503, echo), (200, {"refresh_token": NEW_REFRESH})]:
            token_route.mock(return_value=httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body))
            errors.append((await c.refresh(REFRESH)).error)
            errors.append((await c.exchange_code(REFRESH)).error)
        token_route.mock(side_effect=httpx.ConnectError(echo))
        errors.append((await c.refresh(REFRESH)).error)
        token_route.mock(return_value=httpx.Response(200, json=token_json()))
        ok = await c.refresh(REFRESH)
        assert NEW_ACCESS not in repr(ok) and NEW_REFRESH not in repr(ok)
        for status, body in [(401, {"message": api_echo}), (429, api_echo), (500, api_echo), (200, "<html>" + api_echo)]:
            api_route.mock(return_value=httpx.Response(status, text=body) if isinstance(body, str) else httpx.Response(status, json=body))
            errors.append((await c.get("/companyinformation", access_token=ACCESS, limit_key="t")).error)
        api_route.mock(side_effect=httpx.ReadError(api_echo))
        errors.append((await c.get("/companyinformation", access_token=ACCESS, limit_key="t")).error)
        respx_mock.post(AUTH + "/revoke").mock(return_value=httpx.Response(400, text=echo))
        assert await c.revoke(REFRESH) is False

    assert all(e is not None for e in errors)
    evidence = caplog.text + "".join(e.excerpt + e.message + e.describe() + repr(e) for e in errors)
    for secret in (ACCESS, REFRESH, NEW_ACCESS, NEW_REFRESH, CLIENT_SECRET, "access-signature"):
        assert secret not in evidence


# --- rate limiter ---------------------------------------------------------------------------


async def test_limiter_window_per_key():
    limiter = RateLimiter(25, 0.5)
    start = time.monotonic()
    done: list[float] = []

    async def one(key):
        await limiter.acquire(key)
        done.append(time.monotonic() - start)

    busy = asyncio.gather(*(one("acme") for _ in range(30)))
    await asyncio.sleep(0.05)  # acme's first 25 are in; 5 are waiting
    t0 = time.monotonic()
    await limiter.acquire("other")  # another tenant is not delayed by acme's queue
    assert time.monotonic() - t0 < 0.2
    await busy
    times = sorted(done)
    assert all(t < 0.3 for t in times[:25])
    assert all(t >= 0.45 for t in times[25:])  # the last 5 waited for the window
    assert times[-1] < 3.0


async def test_limiter_never_exceeds_window_under_concurrency():
    limiter = RateLimiter(10, 0.2)
    stamps: list[float] = []

    async def one():
        await limiter.acquire("k")
        stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(45)))
    stamps.sort()
    for i in range(len(stamps) - 10):
        assert stamps[i + 10] - stamps[i] >= 0.2 - 0.02  # any 11 calls span at least one window


async def test_limiter_penalise():
    limiter = RateLimiter(100, 0.2)
    limiter.penalise("acme", 0.3)
    limiter.penalise("acme", 0.01)  # never shortens
    limiter.penalise("acme", float("nan"))
    t0 = time.monotonic()
    await limiter.acquire("other")
    assert time.monotonic() - t0 < 0.1
    await limiter.acquire("acme")
    assert time.monotonic() - t0 >= 0.28


async def test_limiter_memory_is_bounded():
    limiter = RateLimiter(5, 0.05)
    await asyncio.gather(*(limiter.acquire(f"tenant-{i}") for i in range(3000)))
    assert 0 < len(limiter) <= 3000  # a sweep may already have run mid-way
    await asyncio.sleep(0.1)
    await limiter.acquire("late")  # triggers the sweep of idle windows
    assert len(limiter) <= 1


async def test_limiter_cancelled_waiter_does_not_block_others():
    limiter = RateLimiter(1, 0.2)
    await limiter.acquire("k")
    waiter = asyncio.create_task(limiter.acquire("k"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    t0 = time.monotonic()
    await asyncio.wait_for(limiter.acquire("k"), 2)
    assert time.monotonic() - t0 < 1.0


def test_limiter_validates():
    with pytest.raises(ValueError):
        RateLimiter(0, 1)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)
