"""Pure rules: Facts -> checks -> one cause -> steps. No I/O here, so every branch is cheap to test."""
from __future__ import annotations

from datetime import datetime, timezone

from bot.diagnosis import catalogue
from bot.diagnosis.facts import Facts, Probe
from bot.diagnosis.model import PRECEDENCE, TRANSIENT, Cause, Check, Diagnosis, Status
from bot.fortnox.codes import Category
from bot.fortnox.errors import FortnoxError
from bot.fortnox.scopes import PROBE_SCOPE, SCOPE_PROBE_PATHS

SCOPE_LABELS = {
    "invoice": "invoices", "customer": "customers", "article": "articles", "bookkeeping": "vouchers",
    "payment": "payments", "costcenter": "cost centres", "supplierinvoice": "supplier invoices",
    "supplier": "suppliers", "order": "orders", "offer": "offers", "project": "projects",
    "salary": "salaries", "companyinformation": "company information", "profile": "user profile",
}

# What an error from ONE resource means while the company probe passes with the same token (F-D5):
# never an expired token, always that resource's scope, licence or the user's rights.
_RESOURCE_CAUSE = {
    Category.scope: Cause.USER_PERMISSIONS,          # scope is in the token, so the user lacks the right
    Category.license: Cause.LICENSE_MISSING,
    Category.permission: Cause.USER_PERMISSIONS,
    Category.auth: Cause.USER_PERMISSIONS,
    Category.credential_format: Cause.USER_PERMISSIONS,
    Category.bad_headers: Cause.BOT_MISCONFIGURED,
}
# What an error from the company probe means.
_PROBE_CAUSE = {
    Category.credential_format: Cause.CREDENTIALS_MISSING,
    Category.license: Cause.LICENSE_MISSING,
    Category.permission: Cause.USER_PERMISSIONS,
    Category.bad_headers: Cause.BOT_MISCONFIGURED,
    Category.rate_limited: Cause.RATE_LIMITED,
}
# What a token-endpoint error means.
_REFRESH_CAUSE = {
    Category.invalid_refresh: Cause.REACTIVATION_REQUIRED,
    Category.invalid_client: Cause.CLIENT_CREDENTIALS_INVALID,
    Category.redirect_mismatch: Cause.BOT_MISCONFIGURED,
    Category.service_account_not_allowed: Cause.BOT_MISCONFIGURED,
    Category.rate_limited: Cause.RATE_LIMITED,
}


def describe_error(err: FortnoxError) -> str:
    """Status, code and Fortnox's words (or a body excerpt) — the evidence a person needs."""
    parts = []
    if err.transport:
        parts.append(f"no answer ({err.transport})")
    if err.status is not None:
        parts.append(f"HTTP {err.status}")
    if err.code is not None:
        parts.append(f"code {err.code}")
    if err.oauth_error:
        parts.append(err.oauth_error)
    text = err.message or err.excerpt
    if text:
        parts.append(f'"{text[:200]}"')
    return " ".join(parts) or "no usable answer"


def _label(scope: str) -> str:
    return SCOPE_LABELS.get(scope, scope)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "unknown"
    secs = int((when - now).total_seconds())
    mins = abs(secs) // 60
    span = f"{mins // 60} h {mins % 60} min" if mins >= 60 else f"{mins} min"
    return f"in {span}" if secs >= 0 else f"{span} ago"


class _Builder:
    def __init__(self, facts: Facts):
        self.f = facts
        self.checks: list[Check] = []
        self.params: dict[str, str] = {"tenant": facts.tenant_name or facts.tenant_id, "tenant_id": facts.tenant_id}

    def add(self, id: str, status: Status, detail: str, cause: Cause | None = None, **params: str) -> None:
        self.checks.append(Check(id, status, detail, cause if status in (Status.FAIL, Status.WARN) else None))
        for key, value in params.items():
            self.params.setdefault(key, value)


def decide(f: Facts, now: datetime | None = None) -> Diagnosis:
    now = now or datetime.now(timezone.utc)
    b = _Builder(f)
    _config(b)
    if not f.tenant_known:
        b.add("tenant", Status.FAIL, f"tenant {f.tenant_id!r} is not registered with the bot", Cause.TENANT_UNKNOWN)
        return _finish(b)
    kinds = ", ".join(f.kinds) or "none"
    b.add("tenant", Status.PASS, f"registered as {f.tenant_name or f.tenant_id}; exports: {kinds}")
    if f.store_error:
        b.add("store", Status.FAIL, f"the bot's store failed: {f.store_error}", Cause.BOT_MISCONFIGURED,
              setting="DATABASE_URL", reason=f.store_error)
        return _finish(b)
    if not _credentials(b, now):
        return _finish(b)
    _refresh(b)
    _probe(b)
    _company(b)
    _scopes(b)
    _sysadmin(b)
    _reported(b)
    return _finish(b)


def _config(b: _Builder) -> None:
    f = b.f
    if f.key_wide_decrypt_failure:
        b.add("config", Status.FAIL, "ENCRYPTION_KEY decrypts no stored token: the key the tokens were "
              "written with is missing from ENCRYPTION_KEY", Cause.BOT_MISCONFIGURED,
              setting="ENCRYPTION_KEY", reason="no stored token can be decrypted")
    for setting, problem in f.config_problems:
        b.add("config", Status.FAIL, f"{setting}: {problem}", Cause.BOT_MISCONFIGURED, setting=setting, reason=problem)
    if not f.config_problems and not f.key_wide_decrypt_failure:
        b.add("config", Status.PASS, "the bot's Fortnox settings are complete")


def _credentials(b: _Builder, now: datetime) -> bool:
    """Offline checks of the stored credential. False when nothing live can be checked."""
    f = b.f
    if not f.has_connection:
        b.add("credentials", Status.FAIL, "no Fortnox credentials are stored for this tenant", Cause.CREDENTIALS_MISSING)
        return False
    if f.decrypt_error:
        cause = Cause.BOT_MISCONFIGURED if f.key_wide_decrypt_failure else Cause.CREDENTIALS_MISSING
        b.add("credentials", Status.FAIL, f"the stored token cannot be decrypted ({f.decrypt_error})", cause)
        return False
    if f.mode == "legacy" or f.access_kind == "legacy":
        b.add("credentials", Status.FAIL, "the tenant still uses a retired legacy Access-Token "
              "(legacy tokens cannot reach the Fortnox API since 2025-04-30)", Cause.LEGACY_AUTH)
        return False
    if f.access_kind in (None, "none", "garbled") and not f.has_refresh_token and f.mode != "service":
        b.add("credentials", Status.FAIL, "the stored access token is empty or not a Fortnox token, "
              "and there is no refresh token", Cause.CREDENTIALS_MISSING)
        return False
    b.add("credentials", Status.PASS, f"stored encrypted and decryptable ({f.mode} connection"
          f"{', with refresh token' if f.has_refresh_token else ''})")
    c = f.claims
    if c is not None:
        expired = c.exp is not None and c.exp <= now
        b.add("token", Status.WARN if expired else Status.PASS,
              f"access token for company {c.tenant_id or '?'}, user {c.user_id or '?'}; "
              f"{'expired' if expired else 'expires'} {_ago(c.exp, now)}; {len(c.scopes)} scopes")
        if c.client_id and f.configured_client_id and c.client_id != f.configured_client_id:
            b.add("token_client", Status.FAIL, f"the token was issued to another app (client id {c.client_id}), "
                  "not to FORTNOX_CLIENT_ID", Cause.BOT_MISCONFIGURED, setting="FORTNOX_CLIENT_ID",
                  reason="stored tokens belong to another client id")
    elif f.access_kind == "garbled":
        b.add("token", Status.WARN, "the stored access token is not a readable JWT; a refresh will replace it")
    if f.grant_state in ("dead", "rotation_lost"):
        reason = f.grant_reason or "the grant is no longer valid"
        b.add("grant", Status.FAIL, f"the Fortnox grant is gone: {reason}", Cause.REACTIVATION_REQUIRED, reason=reason)
    return True


def _refresh(b: _Builder) -> None:
    f = b.f
    if f.storage_fault:
        b.add("refresh", Status.FAIL, f"Fortnox issued new tokens but the bot's store failed: {f.storage_fault}",
              Cause.BOT_MISCONFIGURED, setting="DATABASE_URL", reason=f.storage_fault)
        b.add("client_credentials", Status.PASS, "Fortnox accepted the integration's client id and secret")
        return
    if f.refresh_busy:
        b.add("refresh", Status.WARN, "another worker has been refreshing this token for too long; try again shortly",
              Cause.FORTNOX_UNAVAILABLE)
        return
    if f.refresh_by_other:
        b.add("refresh", Status.PASS, "another worker had just refreshed the token; using the new one")
    if not f.refresh_attempted:
        if f.mode == "service" or f.has_refresh_token:
            b.add("client_credentials", Status.SKIP, "not exercised: no token request was needed")
        return
    if f.refresh_ok:
        b.add("refresh", Status.PASS, "the access token was refreshed and the new pair stored before use")
        b.add("client_credentials", Status.PASS, "Fortnox accepted the integration's client id and secret")
        return
    err = f.refresh_error
    if err is None:  # refresh impossible (dead grant, no refresh token): the grant check said why
        if f.refresh_dead_reason and f.grant_state not in ("dead", "rotation_lost"):
            b.add("refresh", Status.FAIL, f.refresh_dead_reason, Cause.REACTIVATION_REQUIRED, reason=f.refresh_dead_reason)
        return
    cause = _REFRESH_CAUSE.get(err.category, Cause.FORTNOX_UNAVAILABLE)
    detail = f"the token endpoint answered {describe_error(err)}"
    if cause == Cause.CLIENT_CREDENTIALS_INVALID:
        b.add("client_credentials", Status.FAIL, f"Fortnox rejects the integration's client id/secret: "
              f"{describe_error(err)} (affects every tenant)", cause, message=err.message)
        return
    if cause == Cause.REACTIVATION_REQUIRED:
        reason = f.refresh_dead_reason or f"Fortnox rejected the refresh token ({err.message or err.oauth_error})"
        b.add("refresh", Status.FAIL, f"{detail}: the refresh token is used, expired or revoked", cause, reason=reason)
        b.add("client_credentials", Status.PASS, "Fortnox accepted the integration's client id and secret")
        return
    if cause in TRANSIENT:
        detail += "; stored tokens were left untouched"
    b.add("refresh", Status.FAIL, detail, cause, status=str(err.status or err.transport or ""),
          message=err.message or err.excerpt, setting="FORTNOX_REDIRECT_URI", reason=detail,
          retry_after=f"{int(err.retry_after)} s" if err.retry_after else "a minute")


def _probe_failure_cause(f: Facts, err: FortnoxError) -> Cause:
    if err.category in _PROBE_CAUSE:
        return _PROBE_CAUSE[err.category]
    if err.category in (Category.auth,):
        # Refused although the token is fresh (or was just refreshed): the grant behind it is gone
        # (user removed, integration removed, revoked).
        return Cause.REACTIVATION_REQUIRED
    if err.category == Category.scope:
        return Cause.SCOPES_MISSING if PROBE_SCOPE not in f.granted else Cause.USER_PERMISSIONS
    return Cause.FORTNOX_UNAVAILABLE


def _probe(b: _Builder) -> None:
    f = b.f
    p = f.probe
    if p is None:
        b.add("probe", Status.SKIP, "not run: no usable access token")
        return
    if p.ok:
        info = (p.data or {}).get("CompanyInformation") or {}
        name = info.get("CompanyName") or "?"
        number = info.get("DatabaseNumber") or "?"
        note = " (after refreshing a token Fortnox had refused)" if f.stale_token_auth_failure else ""
        b.add("probe", Status.PASS, f"GET /companyinformation answered {p.status}: {name} ({number}){note}")
        return
    err = p.error
    cause = _probe_failure_cause(f, err)
    detail = f"GET /companyinformation: {describe_error(err)}"
    if cause == Cause.REACTIVATION_REQUIRED:
        reason = "Fortnox refuses the access token even right after a refresh (user removed or integration revoked)" \
            if f.refreshed else "Fortnox refuses the access token and it cannot be refreshed"
        b.add("probe", Status.FAIL, f"{detail}; {reason}", cause, reason=reason, message=err.message)
        return
    b.add("probe", Status.FAIL, detail, cause, status=str(err.status or err.transport or ""),
          message=err.message or err.excerpt, resource=_label(PROBE_SCOPE),
          retry_after=f"{int(err.retry_after)} s" if err.retry_after else "a minute",
          setting="bot headers", reason=detail)


def _company(b: _Builder) -> None:
    f = b.f
    token_company = f.claims.tenant_id if f.claims else None
    probe_company = None
    if f.probe and f.probe.ok:
        number = ((f.probe.data or {}).get("CompanyInformation") or {}).get("DatabaseNumber")
        probe_company = str(number) if number not in (None, "") else None
    actual = probe_company or token_company
    if not f.expected_company or not actual:
        return
    if str(f.expected_company) != actual:
        reason = (f"the token belongs to Fortnox company {actual}, but this tenant is company {f.expected_company} "
                  "(a wrong company was chosen when consenting)")
        b.add("company", Status.FAIL, reason, Cause.REACTIVATION_REQUIRED, reason=reason)
    else:
        b.add("company", Status.PASS, f"the token belongs to this tenant's company ({actual})")


def _scopes(b: _Builder) -> None:
    f = b.f
    live = f.probe is not None and f.probe.ok
    missing, unrequestable = [], []
    for scope in sorted(f.needed):
        path = SCOPE_PROBE_PATHS.get(scope, "")
        if scope not in f.granted:
            if f.claims is None and not f.granted:
                b.add(f"scope:{scope}", Status.SKIP, "granted scopes unknown (no readable token)")
            elif scope in f.requestable:
                missing.append(scope)
                b.add(f"scope:{scope}", Status.FAIL, f"needed for {_label(scope)} but not granted to the token; "
                      "a new consent will ask for it", Cause.SCOPES_MISSING)
            else:
                unrequestable.append(scope)
                b.add(f"scope:{scope}", Status.FAIL, f"needed for {_label(scope)} but not a scope the bot requests "
                      "(FORTNOX_SCOPES / the app's registration): a new consent cannot add it",
                      Cause.SCOPE_NOT_REQUESTABLE)
            continue
        if scope == PROBE_SCOPE:
            b.add(f"scope:{scope}", Status.PASS, "granted; checked by the company probe")
            continue
        probe = f.resources.get(scope)
        if probe is None:
            b.add(f"scope:{scope}", Status.SKIP, "granted; not probed" + ("" if live else " (the company probe failed)"))
            continue
        _resource(b, scope, path, probe)
    if missing:
        b.params.setdefault("missing_scopes", ", ".join(missing))
    if unrequestable:
        b.params.setdefault("unrequestable_scopes", ", ".join(unrequestable))


def _resource(b: _Builder, scope: str, path: str, probe: Probe) -> None:
    label = _label(scope)
    if probe.ok:
        b.add(f"scope:{scope}", Status.PASS, f"granted; GET {path} answered {probe.status}")
        return
    err = probe.error
    detail = f"granted, but GET {path}: {describe_error(err)}"
    if err.category == Category.not_found:
        b.add(f"scope:{scope}", Status.PASS, f"granted; GET {path}: {describe_error(err)} (a data error, not access)")
        return
    if err.category == Category.rate_limited:
        b.add(f"scope:{scope}", Status.WARN, detail, Cause.RATE_LIMITED)
        return
    cause = _RESOURCE_CAUSE.get(err.category)
    if cause is None:
        b.add(f"scope:{scope}", Status.WARN, detail, Cause.FORTNOX_UNAVAILABLE,
              status=str(err.status or err.transport or ""), message=err.message or err.excerpt)
        return
    b.add(f"scope:{scope}", Status.FAIL, f"{detail}: {label} not permitted", cause,
          resource=label, message=err.message or err.excerpt, code=str(err.code or ""))


def _sysadmin(b: _Builder) -> None:
    f = b.f
    if f.me is None:
        if f.probe is not None and f.probe.ok:
            b.add("sysadmin", Status.SKIP, "profile scope not granted: cannot tell whether the activating user "
                  "is a system administrator")
        return
    if not f.me.ok:
        b.add("sysadmin", Status.SKIP, f"GET /me: {describe_error(f.me.error)}")
        return
    info = (f.me.data or {}).get("MeInformation") or {}
    who = info.get("Name") or info.get("Email") or f"user {info.get('Id', '?')}"
    if info.get("SysAdmin") is True:
        b.add("sysadmin", Status.PASS, f"the activating user {who} is a system administrator")
        return
    # A non-admin connection works until it meets a right it lacks; it is the cause only with such a failure.
    blocked = any(c.cause == Cause.USER_PERMISSIONS for c in b.checks if c.status == Status.FAIL)
    b.add("sysadmin", Status.FAIL if blocked else Status.WARN,
          f"the activating user {who} is not a system administrator", Cause.USER_PERMISSIONS)


def _reported(b: _Builder) -> None:
    err = b.f.reported
    if err is None:
        return
    b.params.setdefault("message", err.message or err.excerpt)
    b.add("reported", Status.WARN if err.category != Category.ok else Status.PASS,
          f"the failed export saw {describe_error(err)}")


def _finish(b: _Builder) -> Diagnosis:
    f = b.f
    failing = [c.cause for c in b.checks if c.status == Status.FAIL and c.cause]
    warned = [c.cause for c in b.checks if c.status == Status.WARN and c.cause in TRANSIENT]
    lasting = [c for c in failing if c not in TRANSIENT]
    if lasting:
        cause = min(lasting, key=PRECEDENCE.index)
    elif failing or warned:
        transient = failing + warned
        cause = Cause.RATE_LIMITED if Cause.RATE_LIMITED in transient else Cause.FORTNOX_UNAVAILABLE
    elif f.refreshed or f.stale_token_auth_failure:
        cause = Cause.TOKEN_REFRESHED
    else:
        cause = Cause.HEALTHY
    params = dict(b.params)
    summary = catalogue.summary_for(cause, **params)
    if cause == Cause.HEALTHY and f.reported is not None and f.reported.category == Category.not_found:
        summary += f' The export failed on data, not access: "{f.reported.message}".'
    if f.storage_fault:
        summary = f"The bot's own store failed while saving refreshed tokens ({f.storage_fault}); " + summary
    granted_or_needed = (f.needed | f.granted | {PROBE_SCOPE, "profile"}) & f.requestable
    retry = None
    for err in (f.refresh_error, f.probe.error if f.probe else None):
        if err is not None and err.retry_after:
            retry = err.retry_after
    return Diagnosis(
        tenant=f.tenant_id, cause=cause, summary=summary, checks=tuple(b.checks),
        steps=catalogue.steps_for(cause, **params), consent_scopes=frozenset(granted_or_needed),
        storage_fault=f.storage_fault or (f.store_error if f.store_error else None), retry_after=retry,
    )
