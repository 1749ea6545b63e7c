"""The only code in the bot that talks to Fortnox: OAuth token endpoint and REST GETs.

No method raises on Fortnox behaviour or network trouble: every failure comes back as a
FortnoxError. Tokens, secrets and the Authorization header never reach logs or errors.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from bot.fortnox.claims import decode_claims
from bot.fortnox.codes import Category
from bot.fortnox.errors import FortnoxError, parse_error, transport_error
from bot.fortnox.ratelimit import RateLimiter
from bot.fortnox.scopes import parse_scopes
from bot.fortnox.transport import pooled_transport

log = logging.getLogger(__name__)

DEFAULT_EXPIRES_IN = 3600  # reference §4, used when /token omits expires_in
BOT_CALLS_PER_WINDOW = 24  # a margin under Fortnox's 25 per 5 s
_BACKOFF_BASE = 1.0  # seconds; 429 without Retry-After backs off 1, 2, 4 ... (capped)
_NETWORK_ERRORS = (httpx.HTTPError, httpx.InvalidURL, OSError)
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class TokenSet:
    access_token: str = field(repr=False)  # repr=False: a logged TokenSet must not leak tokens
    refresh_token: str | None = field(repr=False)
    expires_at: datetime  # UTC aware
    scopes: frozenset[str]
    token_type: str  # lower-cased ("bearer")


@dataclass(frozen=True)
class TokenResult:
    tokens: TokenSet | None
    error: FortnoxError | None

    @property
    def ok(self) -> bool:
        return self.tokens is not None and self.error is None


@dataclass(frozen=True)
class ApiResult:
    status: int | None
    data: dict | None
    error: FortnoxError | None
    elapsed: float  # wall seconds for the whole call, limiter waits and 429 retries included

    @property
    def ok(self) -> bool:
        return self.error is None


class FortnoxClient:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        auth_url: str,
        api_url: str,
        redirect_uri: str,
        timeout: float = 10.0,
        limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_429_retries: int = 1,
        max_retry_after: float = 10.0,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._auth_url = auth_url.rstrip("/")
        self._api_url = api_url.rstrip("/")
        self._redirect_uri = redirect_uri
        # "is None", not "or": an idle RateLimiter has len() 0 and is falsy.
        self._limiter = limiter if limiter is not None else RateLimiter(BOT_CALLS_PER_WINDOW, 5.0)
        self._max_429_retries = max(0, max_429_retries)
        self._max_retry_after = max(0.0, max_retry_after)
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        self._basic = f"Basic {basic}"
        self._http = httpx.AsyncClient(
            # pool=None: waiting for one of our own pooled connections during a bulk run is
            # our queue, not Fortnox being slow, so it must not surface as a timeout.
            timeout=httpx.Timeout(timeout, pool=None),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
            # the same 200 in small pools: httpcore's cost per request grows with its pool (see transport.py)
            transport=transport or pooled_transport(max_connections=200),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> FortnoxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- consent -------------------------------------------------------------------------

    def consent_url(self, *, state: str, scopes: Iterable[str] | str, service_account: bool = False) -> str:
        """The authorize link (reference §2)."""
        return build_consent_url(auth_url=self._auth_url, client_id=self._client_id, redirect_uri=self._redirect_uri,
                                 state=state, scopes=scopes, service_account=service_account)

    # --- token endpoint ------------------------------------------------------------------

    async def exchange_code(self, code: str) -> TokenResult:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self._redirect_uri}
        return await self._token("authorization_code", data, secrets=(code,))

    async def refresh(self, refresh_token: str) -> TokenResult:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self._token("refresh_token", data, secrets=(refresh_token,))

    async def client_credentials(self, tenant_id: str) -> TokenResult:
        return await self._token(
            "client_credentials", {"grant_type": "client_credentials"}, headers={"TenantId": str(tenant_id)}
        )

    async def revoke(self, refresh_token: str) -> bool:
        """True when Fortnox confirms; False on any error (only refresh tokens can be revoked)."""
        try:
            resp = await self._http.post(
                f"{self._auth_url}/revoke",
                data={"token_type_hint": "refresh_token", "token": refresh_token},
                headers={"Authorization": self._basic, "Accept": "application/json"},
            )
        except _NETWORK_ERRORS as exc:
            log.warning("fortnox revoke failed: %s", self._scrub(transport_error(exc), (refresh_token,)).describe())
            return False
        if not resp.is_success:
            err = self._scrub(parse_error(resp.status_code, resp.content, headers=resp.headers, context="token"), (refresh_token,))
            log.warning("fortnox revoke refused: %s", err.describe())
            return False
        body = _json(resp)
        return not (isinstance(body, dict) and body.get("revoked") is False)

    async def _token(
        self, grant: str, data: dict[str, str], *, headers: dict[str, str] | None = None, secrets: tuple[str, ...] = ()
    ) -> TokenResult:
        sent_at = datetime.now(timezone.utc)  # expiry counted from sending: errs on the early side
        try:
            resp = await self._http.post(
                f"{self._auth_url}/token",
                data=data,
                headers={"Authorization": self._basic, "Accept": "application/json", **(headers or {})},
            )
        except _NETWORK_ERRORS as exc:
            err = self._scrub(transport_error(exc), secrets)
            log.warning("fortnox token grant=%s failed: %s", grant, err.describe())
            return TokenResult(None, err)
        body = _json(resp)
        if resp.is_success:
            tokens = _token_set(body, sent_at)
            if tokens is not None:
                log.debug("fortnox token grant=%s ok, expires %s", grant, tokens.expires_at.isoformat())
                return TokenResult(tokens, None)
            # A 2xx without a usable token is Fortnox misbehaving, not the tenant's fault.
            err = parse_error(resp.status_code, resp.content, headers=resp.headers, context="token")
            err = replace(err, category=Category.unavailable, message=err.message or "token response without a usable bearer access_token")
        else:
            err = parse_error(resp.status_code, resp.content, headers=resp.headers, context="token")
        err = self._scrub(err, secrets + _token_strings(body))
        log.warning("fortnox token grant=%s refused: %s [%s]", grant, err.describe(), err.category)
        return TokenResult(None, err)

    # --- REST ----------------------------------------------------------------------------

    async def get(self, path: str, *, access_token: str, limit_key: str) -> ApiResult:
        """GET {api_url}{path}; throttled per limit_key (the tenant); a 429 is retried within limits."""
        url = f"{self._api_url}/{path.lstrip('/')}"
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json",
            "Content-Type": "application/json",  # Fortnox rejects calls without it (1000031)
        }
        secrets = (access_token,)
        started = time.monotonic()
        retries = 0
        while True:
            try:
                async with self._limiter.slot(limit_key):
                    resp = await self._http.get(url, headers=headers)
            except _NETWORK_ERRORS as exc:
                err = self._scrub(transport_error(exc), secrets)
                log.warning("fortnox GET %s failed: %s", path, err.describe())
                return ApiResult(None, None, err, time.monotonic() - started)

            if resp.status_code == 429:
                err = self._scrub(parse_error(429, resp.content, headers=resp.headers), secrets)
                delay = err.retry_after if err.retry_after is not None else _backoff(retries)
                # Other calls for this tenant back off too, but never longer than we are willing to wait.
                self._limiter.penalise(limit_key, min(delay, self._max_retry_after))
                if retries < self._max_429_retries and delay <= self._max_retry_after:
                    retries += 1
                    log.info("fortnox GET %s: 429, retry %d after %.1fs", path, retries, delay)
                    continue
                log.warning("fortnox GET %s: 429, giving up after %d retries", path, retries)
                return ApiResult(429, None, err, time.monotonic() - started)

            elapsed = time.monotonic() - started
            if resp.is_success:
                body = _json(resp) if resp.content else None
                if resp.content and body is None:  # e.g. an HTML page with 200: no usable answer
                    err = self._scrub(parse_error(resp.status_code, resp.content, headers=resp.headers), secrets)
                    err = replace(err, category=Category.unavailable, message=err.message or "response was not JSON")
                    log.warning("fortnox GET %s: %s", path, err.describe())
                    return ApiResult(resp.status_code, None, err, elapsed)
                log.debug("fortnox GET %s -> %d in %.3fs", path, resp.status_code, elapsed)
                return ApiResult(resp.status_code, body if isinstance(body, dict) else None, None, elapsed)

            err = self._scrub(parse_error(resp.status_code, resp.content, headers=resp.headers), secrets)
            log.info("fortnox GET %s -> %s [%s]", path, err.describe(), err.category)
            return ApiResult(resp.status_code, None, err, elapsed)

    # --- helpers -------------------------------------------------------------------------

    def _scrub(self, err: FortnoxError, secrets: Iterable[str | None]) -> FortnoxError:
        """Belt and braces over errors.redact: remove the exact secrets this call handled."""
        known = [s for s in (*secrets, self._client_secret, self._basic) if isinstance(s, str) and len(s) >= 4]
        message, excerpt = err.message, err.excerpt
        for secret in sorted(known, key=len, reverse=True):
            message = message.replace(secret, _REDACTED)
            excerpt = excerpt.replace(secret, _REDACTED)
        if (message, excerpt) == (err.message, err.excerpt):
            return err
        return replace(err, message=message, excerpt=excerpt)


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except Exception:  # noqa: BLE001 - not JSON (HTML, empty, binary): callers handle None
        return None


def _lower(d: dict) -> dict:
    return {k.lower(): v for k, v in d.items() if isinstance(k, str)}


def _token_set(body: Any, sent_at: datetime) -> TokenSet | None:
    if not isinstance(body, dict):
        return None
    b = _lower(body)
    access = b.get("access_token")
    if not isinstance(access, str) or not access.strip():
        return None
    token_type = b.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.strip().lower() != "bearer":  # one SDK saw "Bearer"
        return None
    refresh = b.get("refresh_token")
    refresh = refresh if isinstance(refresh, str) and refresh.strip() else None  # client_credentials has none
    expires_in = b.get("expires_in")
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        seconds = DEFAULT_EXPIRES_IN
    if isinstance(expires_in, bool) or not (0 < seconds < 10 * 365 * 86400):
        seconds = DEFAULT_EXPIRES_IN
    scope = b.get("scope")
    if isinstance(scope, list):
        scope = " ".join(s for s in scope if isinstance(s, str))
    scopes = parse_scopes(scope) if isinstance(scope, str) else frozenset()
    if not scopes:  # no scope field: the JWT carries them too (reference §5)
        claims = decode_claims(access)
        scopes = claims.scopes if claims else frozenset()
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        expires_at=sent_at + timedelta(seconds=seconds),
        scopes=scopes,
        token_type="bearer",
    )


def _token_strings(body: Any) -> tuple[str, ...]:
    """Token values in a /token answer, so they can be scrubbed from error evidence."""
    if not isinstance(body, dict):
        return ()
    b = _lower(body)
    return tuple(v for k in ("access_token", "refresh_token") if isinstance(v := b.get(k), str))


def _backoff(attempt: int) -> float:
    base = _BACKOFF_BASE * (2**attempt)
    return base + random.uniform(0, base / 4)  # jitter spreads tenants that hit 429 together


def build_consent_url(*, auth_url: str, client_id: str, redirect_uri: str, state: str, scopes: Iterable[str] | str,
                      service_account: bool = False) -> str:
    """The authorize link (reference §2), no network needed. Scopes are sorted and joined by %20, never '+'."""
    wanted = parse_scopes(scopes) if isinstance(scopes, str) else frozenset(s.strip() for s in scopes if s and s.strip())
    if not wanted:
        raise ValueError("consent_url needs at least one scope")
    params = [
        ("client_id", client_id),
        ("response_type", "code"),
        ("scope", " ".join(sorted(wanted))),
        ("state", state),
        ("redirect_uri", redirect_uri),
        ("access_type", "offline"),
    ]
    if service_account:
        params.append(("account_type", "service"))
    return f"{auth_url.rstrip('/')}/auth?{urlencode(params, quote_via=quote, safe='')}"
