"""The sandbox's world: companies, users, licences, grants and tokens on a movable clock.

Plain Python so tests can arrange a world directly; `app.py` only translates HTTP to these calls.
Behaviour follows shared/reference/fortnox.md (§3 token endpoint, §4 lifetimes, §5 JWT claims,
§6 scopes and licences). Token-endpoint failures raise `OAuthError`; the app picks the body shape.

Every mutation takes `self._lock`: the app runs in uvicorn's loop thread while tests and the demo
call this API from their own thread.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import jwt

ALL_SCOPES = frozenset(
    "archive article bookkeeping companyinformation connectfile costcenter currency customer inbox "
    "invoice noxfinansinvoice offer order payment price print profile project salary settings "
    "supplier supplierinvoice timereporting".split()
)
ALL_LICENCES = frozenset({"kundfaktura", "order", "bokforing", "lon", "arkivplats", "tidredovisning", "anlaggning"})

# Which licences open a scope (reference §6): the company needs at least one of them. None = any company.
SCOPE_LICENCES: dict[str, frozenset[str] | None] = {
    "companyinformation": None,
    "settings": None,
    "profile": None,
    "inbox": None,
    "customer": frozenset({"kundfaktura", "order"}),
    "invoice": frozenset({"kundfaktura", "order"}),
    "article": frozenset({"kundfaktura", "order"}),
    "price": frozenset({"kundfaktura", "order"}),
    "print": frozenset({"kundfaktura", "order"}),
    "payment": frozenset({"bokforing", "order", "kundfaktura"}),
    "project": frozenset({"bokforing", "order", "kundfaktura"}),
    "costcenter": frozenset({"bokforing", "order", "kundfaktura"}),
    "currency": frozenset({"bokforing", "order", "kundfaktura"}),
    "bookkeeping": frozenset({"bokforing", "kundfaktura"}),
    "supplier": frozenset({"bokforing"}),
    "supplierinvoice": frozenset({"bokforing"}),
    "connectfile": frozenset({"bokforing", "anlaggning", "arkivplats"}),
    "archive": frozenset({"arkivplats"}),
    "order": frozenset({"order"}),
    "offer": frozenset({"order"}),
    "salary": frozenset({"lon"}),
    "timereporting": frozenset({"tidredovisning"}),
    "noxfinansinvoice": frozenset({"kundfaktura"}),
}

# Scopes any user of the company may read whatever their rights: the bot's probes (§10) must keep
# working for a user who lacks rights elsewhere, so "user lacks rights" shows on one resource only.
BASE_SCOPES = frozenset({"companyinformation", "settings", "profile"})

# Fortnox right names per scope, for the rightsAsJson claim. Each is expanded with actions below so
# a full-rights token carries ~200 rights and is as large as real ones (§5: 2.6-3.8 KB).
SCOPE_RIGHTS: dict[str, tuple[str, ...]] = {
    "companyinformation": ("settings.company",),
    "settings": ("settings.general", "settings.units", "settings.termsofpayment"),
    "profile": ("settings.profile",),
    "customer": ("kf.customer",),
    "invoice": ("kf.invoice", "kf.contract", "kf.invoiceaccrual", "kf.taxreduction"),
    "article": ("kf.article",),
    "price": ("kf.price", "kf.pricelist"),
    "print": ("kf.printtemplate",),
    "payment": ("kf.payment", "lf.payment"),
    "bookkeeping": ("bf.voucher", "bf.account", "bf.financialyear", "bf.sie", "bf.voucherseries"),
    "supplier": ("lf.supplier",),
    "supplierinvoice": ("lf.supplierinvoice", "lf.accrual", "lf.attest"),
    "project": ("bf.project",),
    "costcenter": ("bf.costcenter",),
    "currency": ("bf.currency",),
    "order": ("order.order",),
    "offer": ("order.offer",),
    "salary": ("lon.run", "lon.employee", "lon.absence", "lon.attendance", "lon.expense", "lon.schedule"),
    "archive": ("arkiv.archive",),
    "inbox": ("arkiv.inbox",),
    "connectfile": ("arkiv.connectfile",),
    "timereporting": ("tid.report", "tid.registration"),
    "noxfinansinvoice": ("kf.noxfinans",),
}
_RIGHT_ACTIONS = ("", ".read", ".create", ".update", ".delete")

CODE_TTL = 600  # authorization codes live 10 minutes (§2)
ISSUER = "https://api.fortnox.se/oauth2"


class OAuthError(Exception):
    """A /token or /revoke failure: HTTP status plus RFC 6749 `error` and `error_description`."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description = status, error, description


class ConsentError(Exception):
    """The authorize request itself is bad: Fortnox shows its own error page, no redirect."""


class LoginError(Exception):
    """The person typed an unknown company or user: show the consent page again with this message."""


class CompanyLocked(Exception):
    """The company is locked (unpaid): Fortnox redirects back with no query parameters at all (§2)."""


@dataclass
class Company:
    tenant_id: int
    name: str
    licences: set[str]
    locked: bool = False
    org_number: str = ""


@dataclass
class User:
    tenant_id: int
    user_id: int
    name: str
    email: str = ""
    sysadmin: bool = True
    rights: set[str] | None = None  # scope names whose resources the user may use; None = all
    service: bool = False  # the non-personal user that a service-account consent creates


@dataclass(eq=False)
class Grant:
    """One consent: what a company allowed one client, through one user."""

    tenant_id: int
    user_id: int
    client_id: str
    scopes: frozenset[str]
    service: bool
    access_expires_in: int
    refresh_expires_in: int
    alive: bool = True
    live_refresh: str | None = None  # the one refresh token of this grant that still works


@dataclass(eq=False)
class AccessToken:
    grant: Grant
    jti: str
    exp: int
    rights: frozenset[str] | None  # user's rights (scope names) when issued: a snapshot, like the claim

    @property
    def tenant_id(self) -> int:
        return self.grant.tenant_id

    @property
    def user_id(self) -> int:
        return self.grant.user_id

    @property
    def client_id(self) -> str:
        return self.grant.client_id

    @property
    def scopes(self) -> frozenset[str]:
        return self.grant.scopes


@dataclass(eq=False)
class RefreshToken:
    grant: Grant
    exp: float
    used: bool = False


@dataclass(eq=False)
class AuthCode:
    client_id: str
    redirect_uri: str | None  # as sent to /auth (None = omitted): /token must send the same
    scopes: frozenset[str]
    tenant_id: int
    user_id: int
    service: bool
    exp: float
    used: bool = False


@dataclass(frozen=True)
class ConsentRequest:
    """A validated GET /auth request."""

    client_id: str
    scopes: tuple[str, ...]
    state: str
    redirect_uri: str | None  # as given
    target: str  # where to send the browser back: given or the registered one
    access_type: str
    account_type: str

    @property
    def service(self) -> bool:
        return self.account_type == "service"


@dataclass(frozen=True)
class Caller:
    """Who a /3 request is from. `token` is set only when the bearer is valid right now."""

    token: AccessToken | None
    error: int | None  # 2000310 or 2000311 when the request is not authenticated
    client_id: str | None
    tenant_id: int | None


@lru_cache(maxsize=256)
def _encode_rights(scopes: frozenset[str]) -> str:
    # gzip then padded standard base64 (not base64url), as in real tokens (§5)
    rights = [base + action for scope in sorted(scopes) for base in SCOPE_RIGHTS.get(scope, ()) for action in _RIGHT_ACTIONS]
    return base64.b64encode(gzip.compress(json.dumps(rights).encode(), mtime=0)).decode()


def decode_rights(value: str) -> list[str]:
    """Inverse of the rightsAsJson encoding (handy for tests and the bot's own checks)."""
    return json.loads(gzip.decompress(base64.b64decode(value)))


def _peek_claims(token: str) -> dict | None:
    """Claims of a JWT-shaped string without verifying it; None when it is not a JWT at all."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def token_hash(token: str) -> str:
    """Short stable id for a secret, so stats can show which refresh token was sent without leaking it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _parse_scopes(scope: str | None) -> tuple[str, ...]:
    # space-separated per §2; tolerate commas and repeated spaces, keep order, drop duplicates
    seen: dict[str, None] = {}
    for part in (scope or "").replace(",", " ").split():
        seen.setdefault(part, None)
    return tuple(seen)


class World:
    def __init__(
        self,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",
        registered_scopes: set[str] | None = None,
        redirect_uris: list[str] | None = None,
        allow_service_accounts: bool = True,
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.registered_scopes = set(ALL_SCOPES) if registered_scopes is None else set(registered_scopes)
        self.redirect_uris = None if redirect_uris is None else list(redirect_uris)
        self.allow_service_accounts = allow_service_accounts

        # knobs the app reads on every request
        self.outage: str | None = None  # None | "html503" | "empty500" | "no_code" | "hang"
        self.outage_scope: str = "all"  # "all" | "api" | "token"
        self.outage_tenants: set[int] | None = None
        self.hang_seconds: float = 30.0
        self.latency: float = 0.0
        self.rate_limit: tuple[int, float] | None = (25, 5.0)
        self.error_style: str = "lower"
        # Fortnox warns that parallel refreshes "invalidate the token": when True, presenting an
        # already-used refresh token also kills the grant's live one (off by default: undocumented).
        self.refresh_reuse_revokes: bool = False

        self.token_calls: list[dict] = []
        self.api_calls: list[dict] = []

        self._lock = threading.RLock()
        self._offset = 0.0
        self._key = secrets.token_bytes(32)  # HS256 key nobody outside can know, like Fortnox's
        self._companies: dict[int, Company] = {}
        self._users: dict[tuple[int, int], User] = {}
        self._grants: dict[int, list[Grant]] = {}  # tenant -> grants
        self._service: dict[tuple[str, int], Grant] = {}  # (client_id, tenant) -> service grant
        self._service_users: dict[tuple[str, int], User] = {}  # (client_id, tenant) -> its service user
        self._access: dict[str, AccessToken] = {}  # the JWT string itself -> record: O(1) auth
        self._refresh: dict[str, RefreshToken] = {}
        self._codes: dict[str, AuthCode] = {}
        self._legacy: dict[str, int] = {}
        self._forced: dict[tuple[int, str], tuple[int, object]] = {}
        self._windows: dict[tuple, deque] = {}

    # ---- clock -------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += float(seconds)

    # ---- companies and users -----------------------------------------------------------------
    def add_company(self, tenant_id: int, name: str, licences: set[str] | None = None, locked: bool = False) -> Company:
        tenant_id = int(tenant_id)
        lic = self._check_licences(licences)
        with self._lock:
            if tenant_id in self._companies:
                raise ValueError(f"company {tenant_id} already exists")
            org = f"55{tenant_id % 10**4:04d}-{tenant_id % 9973:04d}"  # stable, Swedish-looking
            company = Company(tenant_id, name, lic, bool(locked), org)
            self._companies[tenant_id] = company
            self._grants.setdefault(tenant_id, [])
            return company

    def add_user(self, tenant_id: int, user_id: int, name: str, email: str = "", sysadmin: bool = True,
                 rights: set[str] | None = None) -> User:
        tenant_id, user_id = int(tenant_id), int(user_id)
        if rights is not None:
            unknown = set(rights) - ALL_SCOPES
            if unknown:
                raise ValueError(f"unknown scopes in rights: {sorted(unknown)}")
        with self._lock:
            self._company(tenant_id)
            if (tenant_id, user_id) in self._users:
                raise ValueError(f"user {user_id} already exists in company {tenant_id}")
            user = User(tenant_id, user_id, name, email, bool(sysadmin), None if rights is None else set(rights))
            self._users[(tenant_id, user_id)] = user
            return user

    def company(self, tenant_id: int) -> Company | None:
        return self._companies.get(tenant_id)

    def user(self, tenant_id: int, user_id: int) -> User | None:
        return self._users.get((tenant_id, user_id))

    def set_licences(self, tenant_id: int, licences: set[str] | None) -> None:
        lic = self._check_licences(licences)
        with self._lock:
            self._company(int(tenant_id)).licences = lic

    def licensed(self, tenant_id: int, scope: str) -> bool:
        needed = SCOPE_LICENCES.get(scope)
        company = self._companies.get(tenant_id)
        return needed is None or (company is not None and not needed.isdisjoint(company.licences))

    def remove_user(self, tenant_id: int, user_id: int) -> None:
        """The user left: their grants die (API 2000310, refresh invalid_grant). Service grants live on."""
        key = (int(tenant_id), int(user_id))
        with self._lock:
            if self._users.pop(key, None) is None:
                raise KeyError(f"no user {key[1]} in company {key[0]}")
            for grant in self._grants.get(key[0], ()):
                if grant.user_id == key[1]:
                    grant.alive = False

    def remove_integration(self, tenant_id: int) -> None:
        """The customer removed the integration: every grant of the company dies, tokens with it."""
        tenant_id = int(tenant_id)
        with self._lock:
            self._company(tenant_id)
            for grant in self._grants.get(tenant_id, ()):
                grant.alive = False
            for key in [k for k in self._service if k[1] == tenant_id]:
                del self._service[key]

    # ---- grants and tokens -------------------------------------------------------------------
    def issue_grant(self, tenant_id: int, user_id: int, scopes: set[str], *, service: bool = False,
                    access_expires_in: int = 3600, refresh_expires_in: int = 45 * 86400,
                    client_id: str | None = None) -> dict:
        """Mint tokens as if consent and code exchange had happened (no portal or licence checks)."""
        tenant_id, user_id = int(tenant_id), int(user_id)
        scopes = frozenset(scopes)
        unknown = scopes - ALL_SCOPES
        if unknown:
            raise ValueError(f"unknown scopes: {sorted(unknown)}")
        with self._lock:
            if self._users.get((tenant_id, user_id)) is None:
                raise KeyError(f"no user {user_id} in company {tenant_id}")
            grant = self._new_grant(tenant_id, user_id, client_id or self.client_id, scopes, service,
                                    int(access_expires_in), int(refresh_expires_in))
            out = self._mint(grant, with_refresh=True)
        out["expires_at"] = self._access[out["access_token"]].exp
        return out

    def legacy_token(self, tenant_id: int) -> str:
        """A retired Access-Token (a UUID, not a JWT): the API no longer accepts it (§8)."""
        token = str(uuid.uuid4())
        with self._lock:
            self._legacy[token] = int(tenant_id)
        return token

    def revoke(self, refresh_token: str, client_id: str | None = None) -> bool:
        """Kill a refresh token (the grant can no longer refresh). Access tokens live on (§3)."""
        with self._lock:
            rec = self._refresh.get(refresh_token)
            if rec is None or rec.used or rec.grant.client_id != (client_id or self.client_id):
                return False
            rec.used = True
            rec.grant.live_refresh = None
            return True

    def _new_grant(self, tenant_id, user_id, client_id, scopes, service, access_in, refresh_in) -> Grant:
        if service:
            user_id = self._service_user(tenant_id, client_id).user_id
        grant = Grant(tenant_id, user_id, client_id, scopes, service, access_in, refresh_in)
        self._grants.setdefault(tenant_id, []).append(grant)
        if service:
            self._service[(client_id, tenant_id)] = grant  # the latest service consent is the one used
        return grant

    def _service_user(self, tenant_id: int, client_id: str) -> User:
        # a service consent creates one non-personal sysadmin user per client id + company (§11)
        user = self._service_users.get((client_id, tenant_id))
        if user is not None and self._users.get((tenant_id, user.user_id)) is user:
            return user
        user_id = 9001
        while (tenant_id, user_id) in self._users:
            user_id += 1
        user = User(tenant_id, user_id, "Tjänstekonto", "", True, None, service=True)
        self._users[(tenant_id, user_id)] = user
        self._service_users[(client_id, tenant_id)] = user
        return user

    def _mint(self, grant: Grant, *, with_refresh: bool) -> dict:
        now = int(self.now())
        user = self._users.get((grant.tenant_id, grant.user_id))
        rights = None if user is None or user.rights is None else frozenset(user.rights)
        encoded = _encode_rights(frozenset(ALL_SCOPES if rights is None else rights))
        scopes = sorted(grant.scopes)
        jti = str(uuid.uuid4())
        claims = {
            "iss": ISSUER,
            "aud": grant.client_id,
            "sub": f"{grant.user_id}@{grant.tenant_id}",
            "iat": now,
            "exp": now + grant.access_expires_in,
            "jti": jti,
            "authsource": "OAUTH2",
            "token_type": "bearer",
            "tenantId": grant.tenant_id,
            "userId": grant.user_id,
            "clientId": grant.client_id,
            "scopes": scopes,
            "scope": " ".join(scopes),
            "rightsAsJson": encoded,
            "rights": encoded,
        }
        access = jwt.encode(claims, self._key, algorithm="HS256")
        self._access[access] = AccessToken(grant, jti, claims["exp"], rights)
        out = {"access_token": access, "scope": claims["scope"], "expires_in": grant.access_expires_in,
               "token_type": "bearer"}
        if with_refresh:
            refresh = secrets.token_urlsafe(30)  # opaque, 40 chars (§3)
            self._refresh[refresh] = RefreshToken(grant, now + grant.refresh_expires_in)
            grant.live_refresh = refresh
            out["refresh_token"] = refresh
        return out

    # ---- token endpoint ----------------------------------------------------------------------
    def client_ok(self, client_id: str, client_secret: str) -> bool:
        return secrets.compare_digest(client_id.encode(), self.client_id.encode()) and \
            secrets.compare_digest(client_secret.encode(), self.client_secret.encode())

    def exchange_code(self, client_id: str, code: str, redirect_uri: str | None) -> dict:
        invalid = OAuthError(400, "invalid_grant", "Invalid authorization code")
        with self._lock:
            rec = self._codes.get(code or "")
            if rec is None or rec.used or rec.client_id != client_id or rec.exp <= self.now():
                raise invalid
            if rec.redirect_uri is not None:
                matches = redirect_uri == rec.redirect_uri
            else:  # omitted at /auth: omitted again or the registered one (§2)
                matches = redirect_uri is None or redirect_uri == self._default_redirect()
            if not matches:
                raise OAuthError(400, "invalid_grant", "redirect_uri mismatch")
            if (rec.tenant_id, rec.user_id) not in self._users:  # the user left before the exchange
                raise invalid
            rec.used = True
            grant = self._new_grant(rec.tenant_id, rec.user_id, client_id, rec.scopes, rec.service, 3600, 45 * 86400)
            return self._mint(grant, with_refresh=True)

    def refresh(self, client_id: str, refresh_token: str) -> dict:
        invalid = OAuthError(400, "invalid_grant", "Invalid refresh token")
        with self._lock:
            rec = self._refresh.get(refresh_token or "")
            if rec is None or rec.grant.client_id != client_id:
                raise invalid
            if rec.used:
                if self.refresh_reuse_revokes and rec.grant.live_refresh:
                    self._refresh[rec.grant.live_refresh].used = True
                    rec.grant.live_refresh = None
                raise invalid
            if rec.exp <= self.now() or not rec.grant.alive:
                raise invalid
            rec.used = True  # single use: the old one dies now, the new pair replaces it
            return self._mint(rec.grant, with_refresh=True)

    def client_credentials(self, client_id: str, tenant_header: str | None) -> dict:
        """Service-account token: needs header TenantId and an earlier account_type=service consent.

        No TenantId (or not a number) -> 400 invalid_request. No live service consent for that
        company -> 400 unauthorized_client (not invalid_client: the client itself is fine, and the
        bot must not read this as "our credentials are wrong for every tenant"). No refresh token.
        """
        tenant_id = _as_int((tenant_header or "").strip())
        if tenant_id is None:
            raise OAuthError(400, "invalid_request", "Missing or invalid TenantId header")
        with self._lock:
            grant = self._service.get((client_id, tenant_id))
            if grant is None or not grant.alive:
                raise OAuthError(400, "unauthorized_client", "No service account consent for this tenant")
            return self._mint(grant, with_refresh=False)

    def token_request_tenant(self, grant_type: str | None, form, tenant_header: str | None) -> int | None:
        """Best guess of the company a /token request is about (for per-tenant outages and stats)."""
        if grant_type == "refresh_token":
            rec = self._refresh.get(form.get("refresh_token") or "")
            return rec.grant.tenant_id if rec else None
        if grant_type == "authorization_code":
            rec = self._codes.get(form.get("code") or "")
            return rec.tenant_id if rec else None
        if grant_type == "client_credentials":
            return _as_int((tenant_header or "").strip())
        return None

    # ---- consent -----------------------------------------------------------------------------
    def authorize_request(self, params) -> ConsentRequest:
        """Validate GET /auth parameters the way Fortnox does before showing its login page."""
        client_id = params.get("client_id") or ""
        if not client_id or not secrets.compare_digest(client_id.encode(), self.client_id.encode()):
            raise ConsentError("Auth code or ClientID supplied is invalid")
        redirect_uri = params.get("redirect_uri") or None
        if redirect_uri is not None:
            parts = urlsplit(redirect_uri)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConsentError("invalid_request: redirect_uri is not an absolute URL")
            if self.redirect_uris is not None and redirect_uri not in self.redirect_uris:
                raise ConsentError("invalid_request: redirect_uri does not match the registered one")
        target = redirect_uri or self._default_redirect()
        if target is None:
            raise ConsentError("invalid_request: redirect_uri missing and none is registered")
        if (params.get("response_type") or "") != "code":
            raise ConsentError("unsupported_response_type")
        scopes = _parse_scopes(params.get("scope"))
        if not scopes or any(s not in self.registered_scopes for s in scopes):
            raise ConsentError("invalid_scope")
        account_type = params.get("account_type") or ""
        if account_type == "service" and not self.allow_service_accounts:
            raise ConsentError("Client does not allow service account")
        state = params.get("state") or ""
        if not state:
            raise ConsentError("invalid_request: state is required")
        return ConsentRequest(client_id, scopes, state, redirect_uri, target,
                              params.get("access_type") or "", account_type)

    def approve(self, req: ConsentRequest, tenant_id, user_id) -> str:
        """The person logged in and pressed "Godkänn & aktivera": returns a fresh authorization code."""
        tenant, user_no = _as_int(tenant_id), _as_int(user_id)
        with self._lock:
            company = self._companies.get(tenant) if tenant is not None else None
            if company is None:
                raise LoginError("Okänt företag (kontrollera företagets databasnummer).")
            user = self._users.get((tenant, user_no))
            if user is None or user.service:
                raise LoginError("Felaktig inloggning: användaren finns inte i företaget.")
            if company.locked:
                raise CompanyLocked()
            if req.service and not user.sysadmin:
                raise ConsentError("Endast en systemadministratör kan godkänna ett tjänstekonto.")
            code = secrets.token_urlsafe(24)
            self._codes[code] = AuthCode(req.client_id, req.redirect_uri, frozenset(req.scopes), tenant, user_no,
                                         req.service, self.now() + CODE_TTL)
            return code

    def _default_redirect(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    # ---- the REST API's view -----------------------------------------------------------------
    def authenticate(self, authorization: str | None, legacy_token: str | None) -> Caller:
        """Who sent a /3 request. 2000311 = no or malformed credential; 2000310 = present but not valid."""
        if authorization is None:
            if legacy_token is not None:  # the retired Access-Token header: always refused now (§8)
                return Caller(None, 2000310, None, self._legacy.get(legacy_token.strip()))
            return Caller(None, 2000311, None, None)
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return Caller(None, 2000311, None, None)
        rec = self._access.get(value)
        if rec is None:
            claims = _peek_claims(value)
            if claims is None:  # not a JWT at all: garbled, or a legacy UUID sent as Bearer
                return Caller(None, 2000311, None, None)
            # JWT-shaped but not ours (tampered, other sandbox): invalid login
            return Caller(None, 2000310, str(claims.get("clientId") or "") or None, _as_int(claims.get("tenantId")))
        if rec.exp <= self.now():
            self._access.pop(value, None)  # expired for good: forget it, the JWT still decodes to 2000310
            return Caller(None, 2000310, rec.client_id, rec.tenant_id)
        if not rec.grant.alive or rec.client_id != self.client_id:  # revoked, or another app's token
            return Caller(None, 2000310, rec.client_id, rec.tenant_id)
        return Caller(rec, None, rec.client_id, rec.tenant_id)

    def rate_check(self, key: tuple) -> int | None:
        """Sliding window per (client id, tenant). None = allowed (and counted), else Retry-After seconds."""
        limit = self.rate_limit
        if limit is None:
            return None
        count, window = limit
        now = self.now()
        with self._lock:
            hits = self._windows.get(key)
            if hits is None:
                hits = self._windows[key] = deque()
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= count:
                return max(1, math.ceil(hits[0] + window - now))
            hits.append(now)
            return None

    def force(self, tenant_id: int, path: str, status: int, body) -> None:
        """Make one API path answer `status` + `body` for one company (after auth/scope/licence checks)."""
        with self._lock:
            self._forced[(int(tenant_id), normalise_path(path))] = (int(status), body)

    def unforce(self, tenant_id: int | None = None, path: str | None = None) -> None:
        """Drop forced answers: one (tenant, path), all of a tenant, or all."""
        with self._lock:
            for key in list(self._forced):
                if (tenant_id is None or key[0] == int(tenant_id)) and (path is None or key[1] == normalise_path(path)):
                    del self._forced[key]

    def forced(self, tenant_id: int, path: str) -> tuple[int, object] | None:
        return self._forced.get((tenant_id, path))

    # ---- disturbances and stats ----------------------------------------------------------------
    def outage_for(self, surface: str, tenant_id: int | None) -> str | None:
        """The outage mode hitting this request ("api" or "token" surface), or None."""
        mode = self.outage
        if mode is None or self.outage_scope not in ("all", surface):
            return None
        tenants = self.outage_tenants
        if tenants is not None and tenant_id not in tenants:
            return None
        return mode

    def record_token_call(self, entry: dict) -> None:
        entry.setdefault("t", self.now())
        self.token_calls.append(entry)

    def record_api_call(self, path: str, status: int, tenant_id: int | None) -> None:
        self.api_calls.append({"path": path, "status": status, "tenant_id": tenant_id, "t": self.now()})

    def reset_stats(self) -> None:
        with self._lock:
            self.token_calls.clear()
            self.api_calls.clear()

    # ---- helpers -----------------------------------------------------------------------------
    def _company(self, tenant_id: int) -> Company:
        company = self._companies.get(tenant_id)
        if company is None:
            raise KeyError(f"no company {tenant_id}")
        return company

    @staticmethod
    def _check_licences(licences) -> set[str]:
        if licences is None:
            return set(ALL_LICENCES)
        unknown = set(licences) - ALL_LICENCES
        if unknown:
            raise ValueError(f"unknown licences: {sorted(unknown)}")
        return set(licences)


def normalise_path(path: str) -> str:
    """'/3/invoices/', 'invoices' and '/invoices?x=1' all mean '/3/invoices'."""
    path = path.split("?", 1)[0].strip().strip("/")
    if path.startswith("3/") or path == "3":
        path = path[2:]
    return "/3/" + path.lower()
