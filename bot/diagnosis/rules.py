"""Pure rules: Facts -> checks -> one cause -> steps. No I/O here, so every branch is cheap to test."""
from __future__ import annotations

from datetime import datetime, timezone

from bot.diagnosis import catalogue
from bot.diagnosis.evidence import describe_error, label, retry_text, span, status_text
from bot.diagnosis.facts import Facts, Probe
from bot.diagnosis.model import PRECEDENCE, TRANSIENT, Cause, Check, Diagnosis, Status
from bot.fortnox.codes import Category
from bot.fortnox.errors import FortnoxError
from bot.fortnox.scopes import PROBE_SCOPE, SCOPE_PROBE_PATHS

DEFAULT_RETRY = 60.0      # seconds: when Fortnox gives no Retry-After, look again in a minute

# What an error from ONE resource means while the company probe passes with the same token (F-D5):
# never an expired token, always that resource's scope, licence or the user's rights.
_RESOURCE_CAUSE = {
    Category.scope: Cause.USER_PERMISSIONS,          # the scope is in the token, so the user lacks the right
    Category.license: Cause.LICENSE_MISSING,
    Category.permission: Cause.USER_PERMISSIONS,
    Category.auth: Cause.USER_PERMISSIONS,
    Category.credential_format: Cause.USER_PERMISSIONS,
    Category.bad_headers: Cause.BOT_MISCONFIGURED,
}
# What a token-endpoint error means.
_REFRESH_CAUSE = {
    Category.invalid_refresh: Cause.REACTIVATION_REQUIRED,
    Category.invalid_client: Cause.CLIENT_CREDENTIALS_INVALID,
    Category.redirect_mismatch: Cause.BOT_MISCONFIGURED,
    Category.service_account_not_allowed: Cause.BOT_MISCONFIGURED,
    Category.invalid_scope: Cause.SCOPE_NOT_REQUESTABLE,
    Category.rate_limited: Cause.RATE_LIMITED,
}
_REFRESH_SETTING = {
    Category.redirect_mismatch: "FORTNOX_REDIRECT_URI",
    Category.service_account_not_allowed: "the app's service-account (\"Only administrator\") setting in the "
                                          "Developer Portal",
}


class _Builder:
    def __init__(self, facts: Facts):
        self.f = facts
        self.checks: list[Check] = []
        self.base: dict[str, str] = {"tenant": facts.tenant_name or facts.tenant_id, "tenant_id": facts.tenant_id}
        self.params: dict[Cause, dict[str, str]] = {}   # template params, from the first check naming each cause

    def add(self, id: str, st: Status, detail: str, cause: Cause | None = None, /, **params) -> None:
        cause = cause if st in (Status.FAIL, Status.WARN) else None
        self.checks.append(Check(id, st, detail, cause))
        if cause is not None:
            bucket = self.params.setdefault(cause, {})
            for key, value in params.items():
                if value not in (None, ""):
                    bucket.setdefault(key, str(value))


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
    _grant(b)
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
        b.add("config:ENCRYPTION_KEY", Status.FAIL, "ENCRYPTION_KEY decrypts no stored token: the key the tokens "
              "were written with is missing from ENCRYPTION_KEY", Cause.BOT_MISCONFIGURED,
              setting="ENCRYPTION_KEY", reason="it cannot decrypt the stored tokens")
    for setting, problem in f.config_problems:
        b.add(f"config:{setting}", Status.FAIL, f"{setting} {problem}", Cause.BOT_MISCONFIGURED,
              setting=setting, reason=problem)
    if not f.config_problems and not f.key_wide_decrypt_failure:
        b.add("config", Status.PASS, "the bot's Fortnox settings are complete")


def _credentials(b: _Builder, now: datetime) -> bool:
    """Offline checks of the stored credential. False when nothing live can be checked."""
    f = b.f
    if not f.has_connection:
        b.add("credentials", Status.FAIL, "no Fortnox credentials are stored for this tenant",
              Cause.CREDENTIALS_MISSING, reason="no credentials are stored for it")
        return False
    if f.decrypt_error:
        if f.key_wide_decrypt_failure:
            b.add("credentials", Status.FAIL, "the stored tokens are intact but cannot be decrypted with "
                  "ENCRYPTION_KEY: they were written with a key it no longer includes", Cause.BOT_MISCONFIGURED,
                  setting="ENCRYPTION_KEY", reason="it cannot decrypt the stored tokens")
        else:
            b.add("credentials", Status.FAIL, "the stored token cannot be decrypted although ENCRYPTION_KEY works: "
                  "the stored value is corrupted", Cause.CREDENTIALS_MISSING,
                  reason="the stored token is corrupted and cannot be decrypted")
        return False
    if f.mode == "legacy" or f.access_kind == "legacy":
        b.add("credentials", Status.FAIL, "the tenant still uses a retired legacy Access-Token "
              "(legacy tokens cannot reach the Fortnox API since 2025-04-30)", Cause.LEGACY_AUTH)
        return False
    renewable = f.mode == "service" or f.has_refresh_token
    if f.access_kind in (None, "none", "garbled") and not renewable:
        b.add("credentials", Status.FAIL, "the stored access token is empty or not a Fortnox token, "
              "and there is no refresh token", Cause.CREDENTIALS_MISSING,
              reason="the stored access token is malformed and there is no refresh token")
        return False
    c = f.claims
    exp = (c.exp if c else None) or f.expires_at
    if f.mode == "oauth" and not f.has_refresh_token and exp is not None and exp <= now:
        b.add("credentials", Status.FAIL, f"only an access token is stored, and it expired {span(exp, now)}; "
              "without a refresh token it cannot be renewed", Cause.CREDENTIALS_MISSING,
              reason="the access token expired and no refresh token is stored")
        return False
    kind = {"oauth": "OAuth connection", "service": "service account"}.get(f.mode or "", f"{f.mode} connection")
    extra = ", with refresh token" if f.has_refresh_token else ("" if f.mode == "service" else ", no refresh token")
    b.add("credentials", Status.PASS, f"stored encrypted and decryptable ({kind}{extra})")
    if c is not None:
        expired = exp is not None and exp <= now
        renewed = f.refreshed or f.refresh_by_other
        st = Status.WARN if expired and not renewed else Status.PASS
        when = f"{'expired' if expired else 'expires'} {span(exp, now)}"
        if expired and renewed:
            when += " (refreshed)"
        b.add("token", st, f"access token (JWT) for company {c.tenant_id or '?'}, user {c.user_id or '?'}, "
              f"{len(c.scopes)} scopes; {when}")
        if f.client_mismatch:
            b.add("token_client", Status.FAIL, f"the token was issued to client id {c.client_id}, not to "
                  f"FORTNOX_CLIENT_ID ({f.configured_client_id}); nothing was sent to Fortnox with it",
                  Cause.BOT_MISCONFIGURED, setting="FORTNOX_CLIENT_ID",
                  reason=f"the stored tokens belong to another app's client id, {c.client_id}")
        if f.mode == "oauth" and not f.has_refresh_token:
            b.add("refresh_token", Status.WARN, f"no refresh token is stored: the connection stops when the access "
                  f"token expires ({span(exp, now)})")
    elif f.access_kind == "garbled":
        b.add("token", Status.WARN, "the stored access token is not a readable JWT; the bot replaces it by refreshing")
    return True


def _grant(b: _Builder) -> None:
    f = b.f
    if f.grant_state in ("dead", "rotation_lost"):
        reason = f.grant_reason or "the grant is no longer valid"
        b.add("grant", Status.FAIL, f"the Fortnox grant is gone: {reason}", Cause.REACTIVATION_REQUIRED,
              reason=reason)


def _refresh_cause(f: Facts, err: FortnoxError) -> Cause:
    if err.category in _REFRESH_CAUSE:
        return _REFRESH_CAUSE[err.category]
    if f.mode == "service" and err.oauth_error == "unauthorized_client":
        return Cause.REACTIVATION_REQUIRED      # no live service-account consent for this company
    if f.mode == "service" and err.oauth_error == "invalid_request":
        return Cause.BOT_MISCONFIGURED          # e.g. no TenantId: the company id is unknown
    return Cause.FORTNOX_UNAVAILABLE


def _refresh(b: _Builder) -> None:
    f = b.f
    if f.client_mismatch or f.grant_state in ("dead", "rotation_lost"):
        return
    if f.storage_fault:
        b.add("refresh", Status.FAIL, f"Fortnox issued a new token pair, but the bot's store failed to save it "
              f"({f.storage_fault})", Cause.BOT_MISCONFIGURED, setting="DATABASE_URL (the bot's store)",
              reason=f.storage_fault)
        b.add("client_credentials", Status.PASS, "Fortnox accepted the integration's client id and secret")
        if f.refresh_dead_reason:
            b.add("grant", Status.FAIL, f"rotation lost: {f.refresh_dead_reason}", Cause.REACTIVATION_REQUIRED,
                  reason=f.refresh_dead_reason)
        return
    if f.refresh_busy:
        b.add("refresh", Status.WARN, "another worker has held this tenant's refresh lease for too long; "
              "try again in a minute", Cause.FORTNOX_UNAVAILABLE, status="a slow token refresh", retry_after="1 min")
        return
    if f.refresh_blocked and not f.refresh_attempted:
        b.add("refresh", Status.SKIP, f"no token request sent: {f.refresh_blocked}")
        return
    if f.refresh_by_other and not f.refresh_attempted:
        if f.refresh_dead_reason:
            b.add("refresh", Status.FAIL, f"another worker's refresh ended the grant: {f.refresh_dead_reason}",
                  Cause.REACTIVATION_REQUIRED, reason=f.refresh_dead_reason)
        else:
            b.add("refresh", Status.PASS, "another worker had just refreshed the token; the new pair is used")
        return
    if not f.refresh_attempted:
        if f.refresh_dead_reason:
            b.add("refresh", Status.FAIL, f"cannot refresh: {f.refresh_dead_reason}", Cause.REACTIVATION_REQUIRED,
                  reason=f.refresh_dead_reason)
        elif f.mode == "service" or f.has_refresh_token:
            b.add("client_credentials", Status.SKIP, "not exercised: the stored access token is still valid")
        return
    if f.refresh_ok:
        why = "after Fortnox refused the previous one" if f.stale_token_auth_failure else "as it had expired"
        b.add("refresh", Status.PASS, f"a new access token was issued {why}; the new pair was stored before use")
        b.add("client_credentials", Status.PASS, "Fortnox accepted the integration's client id and secret")
        return
    err = f.refresh_error
    cause = _refresh_cause(f, err)
    evidence = describe_error(err)
    if cause == Cause.CLIENT_CREDENTIALS_INVALID:
        b.add("client_credentials", Status.FAIL, f"Fortnox rejects the integration's client id/secret: {evidence}; "
              "this affects every tenant; the tenant's tokens were left untouched", cause,
              reason=f"the token endpoint answered {evidence}", message=err.message)
        return
    if cause == Cause.REACTIVATION_REQUIRED:
        reason = f.refresh_dead_reason or f"Fortnox rejected the token request ({err.message or err.oauth_error})"
        b.add("refresh", Status.FAIL, f"the token endpoint answered {evidence}: the refresh token is used, expired "
              "or revoked", cause, reason=reason)
        b.add("client_credentials", Status.PASS, "Fortnox accepted the integration's client id and secret")
        return
    detail = f"the token endpoint answered {evidence}"
    if cause in TRANSIENT:
        wait = retry_text(err, DEFAULT_RETRY)
        b.add("refresh", Status.FAIL, f"{detail}; the stored tokens were left untouched; try again in {wait}", cause,
              status=status_text(err), retry_after=wait, message=err.message or err.excerpt)
        return
    b.add("refresh", Status.FAIL, detail, cause, setting=_REFRESH_SETTING.get(err.category, "FORTNOX_* settings"),
          reason=detail, unrequestable_scopes=err.message if cause == Cause.SCOPE_NOT_REQUESTABLE else None)


def _probe_why_not(f: Facts) -> str:
    if f.client_mismatch:
        return "the stored token belongs to another app"
    if f.grant_state in ("dead", "rotation_lost") or f.refresh_dead_reason:
        return "the grant is gone"
    if f.storage_fault:
        return "the refreshed token could not be saved"
    return "no usable access token (see refresh)"


def _probe(b: _Builder) -> None:
    f = b.f
    p = f.probe
    if p is None:
        b.add("probe", Status.SKIP, f"not run: {_probe_why_not(f)}")
        return
    refused = ""
    if f.refused_probe is not None and f.refused_probe.error is not None:
        refused = f" (Fortnox had refused the previous token: {describe_error(f.refused_probe.error)})"
    if p.ok:
        info = (p.data or {}).get("CompanyInformation") or {}
        name = info.get("CompanyName") or "?"
        number = info.get("DatabaseNumber") or "?"
        b.add("probe", Status.PASS, f"GET {p.path} answered {p.status}: {name} ({number}){refused}")
        return
    err = p.error
    detail = f"GET {p.path}: {describe_error(err)}"
    cat = err.category
    if cat == Category.auth:
        if f.refreshed:
            reason = ("Fortnox refuses even a newly issued access token: the user who activated the integration "
                      "was removed, or the integration was removed or revoked")
            b.add("probe", Status.FAIL, f"{detail}{refused}; {reason}", Cause.REACTIVATION_REQUIRED, reason=reason,
                  message=err.message)
        elif f.refresh_attempted or f.refresh_blocked or f.storage_fault or f.refresh_busy:
            b.add("probe", Status.WARN, f"{detail}; the token could not be refreshed (see refresh)")
        else:
            reason = "Fortnox refuses the access token and it cannot be refreshed"
            b.add("probe", Status.FAIL, f"{detail}; {reason}", Cause.REACTIVATION_REQUIRED, reason=reason,
                  message=err.message)
        return
    resource = label(PROBE_SCOPE)
    if cat == Category.credential_format:
        b.add("probe", Status.FAIL, f"{detail}: Fortnox says the credential is missing or malformed",
              Cause.CREDENTIALS_MISSING, reason=f'Fortnox answered "{err.message or err.excerpt}"',
              message=err.message)
    elif cat == Category.license:
        b.add("probe", Status.FAIL, f"{detail}: no licence for {resource}", Cause.LICENSE_MISSING, resource=resource,
              message=err.message, code=err.code)
    elif cat == Category.permission:
        b.add("probe", Status.FAIL, f"{detail}: {resource} not permitted", Cause.USER_PERMISSIONS,
              resource=resource, message=err.message)
    elif cat == Category.scope:
        if PROBE_SCOPE in f.granted:
            cause = Cause.USER_PERMISSIONS
        else:
            cause = Cause.SCOPES_MISSING if PROBE_SCOPE in f.requestable else Cause.SCOPE_NOT_REQUESTABLE
        b.add("probe", Status.FAIL, f"{detail}: {resource} not permitted", cause, resource=resource,
              message=err.message, missing_scopes=PROBE_SCOPE, unrequestable_scopes=PROBE_SCOPE)
    elif cat == Category.bad_headers:
        b.add("probe", Status.FAIL, f"{detail}: Fortnox rejects the bot's request headers", Cause.BOT_MISCONFIGURED,
              setting="the bot's Accept/Content-Type headers", reason=err.message or "refused headers")
    elif cat == Category.rate_limited:
        wait = retry_text(err, DEFAULT_RETRY)
        b.add("probe", Status.FAIL, f"{detail}; try again in {wait}", Cause.RATE_LIMITED, retry_after=wait)
    else:
        wait = retry_text(err, DEFAULT_RETRY)
        b.add("probe", Status.FAIL, f"{detail}; the stored tokens were left untouched; try again in {wait}",
              Cause.FORTNOX_UNAVAILABLE, status=status_text(err), retry_after=wait, message=err.message or err.excerpt)


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
    missing, unrequestable = [], []
    for scope in sorted(f.needed):
        cid = f"scope:{scope}"
        if scope not in f.granted:
            if f.claims is None and not f.granted:
                b.add(cid, Status.SKIP, "granted scopes unknown (no readable token)")
            elif scope in f.requestable:
                missing.append(scope)
                b.add(cid, Status.FAIL, f"'{scope}' is needed for {label(scope)} but not granted to the token; "
                      "a new consent will ask for it", Cause.SCOPES_MISSING)
            else:
                unrequestable.append(scope)
                b.add(cid, Status.FAIL, f"'{scope}' is needed for {label(scope)} but is not a scope the bot "
                      "requests (FORTNOX_SCOPES / the app's registration): a new consent cannot add it",
                      Cause.SCOPE_NOT_REQUESTABLE)
            continue
        note = "" if scope in f.requestable else "; not in FORTNOX_SCOPES, so a new consent would drop it"
        if scope == PROBE_SCOPE:
            if f.probe is not None and f.probe.ok:
                b.add(cid, Status.WARN if note else Status.PASS, f"granted; the company probe passed{note}")
            else:
                b.add(cid, Status.SKIP, f"granted; not confirmed live (see probe){note}")
            continue
        probe = f.resources.get(scope)
        if probe is None:
            b.add(cid, Status.SKIP, f"granted; not checked live (the company probe did not pass){note}")
            continue
        _resource(b, scope, SCOPE_PROBE_PATHS.get(scope, ""), probe, note)
    if missing:
        b.params.setdefault(Cause.SCOPES_MISSING, {}).setdefault("missing_scopes", ", ".join(missing))
    if unrequestable:
        bucket = b.params.setdefault(Cause.SCOPE_NOT_REQUESTABLE, {})
        bucket.setdefault("unrequestable_scopes", ", ".join(unrequestable))


def _resource(b: _Builder, scope: str, path: str, probe: Probe, note: str) -> None:
    name = label(scope)
    cid = f"scope:{scope}"
    if probe.ok:
        b.add(cid, Status.WARN if note else Status.PASS, f"granted; GET {path} answered {probe.status}{note}")
        return
    err = probe.error
    detail = f"granted, but GET {path}: {describe_error(err)}"
    if err.category == Category.not_found:
        b.add(cid, Status.PASS, f"{detail} (a data error, not access){note}")
        return
    wait = retry_text(err, DEFAULT_RETRY)
    if err.category == Category.rate_limited:
        b.add(cid, Status.WARN, f"{detail}; try again in {wait}", Cause.RATE_LIMITED, retry_after=wait)
        return
    cause = _RESOURCE_CAUSE.get(err.category)
    if cause is None:
        b.add(cid, Status.WARN, f"{detail}; try again in {wait}", Cause.FORTNOX_UNAVAILABLE,
              status=status_text(err), message=err.message or err.excerpt, retry_after=wait)
        return
    what = f"no licence for {name}" if cause == Cause.LICENSE_MISSING else f"{name} not permitted for this connection"
    extra = {"setting": "the bot's Accept/Content-Type headers", "reason": err.message} \
        if cause == Cause.BOT_MISCONFIGURED else {}
    b.add(cid, Status.FAIL, f"{detail}: {what}", cause, resource=name, message=err.message or err.excerpt,
          code=err.code, **extra)


def _sysadmin(b: _Builder) -> None:
    f = b.f
    if f.me is None:
        if f.probe is not None and f.probe.token_accepted:
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
    # The export's error is a lead, not proof: the live checks above decide (it may be hours old).
    b.base.setdefault("message", err.message or err.excerpt)
    b.add("reported", Status.WARN if err.category != Category.ok else Status.PASS,
          f"the failed export saw {describe_error(err)}")


def _pick(b: _Builder) -> Cause:
    f = b.f
    failing = [c.cause for c in b.checks if c.status == Status.FAIL and c.cause]
    lasting = [c for c in failing if c not in TRANSIENT]
    if lasting:
        return min(lasting, key=PRECEDENCE.index)
    transient = failing + [c.cause for c in b.checks if c.status == Status.WARN and c.cause in TRANSIENT]
    if transient:
        return Cause.RATE_LIMITED if Cause.RATE_LIMITED in transient else Cause.FORTNOX_UNAVAILABLE
    if f.refreshed or f.stale_token_auth_failure:
        return Cause.TOKEN_REFRESHED
    return Cause.HEALTHY


def _storage_summary(f: Facts, cause: Cause, summary: str) -> str:
    """The store failed mid-refresh (F-D1): say that first; it is ours to fix, whatever Fortnox said."""
    head = f"The bot's own store failed ({f.storage_fault}); this is ours to fix, not the customer's."
    if f.refresh_dead_reason:
        head += (" Fortnox had already spent the previous refresh token, so the customer must also activate "
                 "the integration again.")
    return head if cause == Cause.BOT_MISCONFIGURED else f"{head} {summary}"


def _finish(b: _Builder) -> Diagnosis:
    f = b.f
    cause = _pick(b)
    params = {**b.base, **b.params.get(cause, {})}
    summary = catalogue.summary_for(cause, **params)
    if cause == Cause.HEALTHY and f.reported is not None and f.reported.category == Category.not_found:
        summary += f' The export failed on data, not access: "{f.reported.message}".'
    if f.storage_fault:
        summary = _storage_summary(f, cause, summary)
    granted_or_needed = (f.needed | f.granted | {PROBE_SCOPE, "profile"}) & f.requestable
    retry = None
    if cause in TRANSIENT:
        errors = [f.refresh_error, f.probe.error if f.probe else None, *(p.error for p in f.resources.values())]
        waits = [e.retry_after for e in errors if e is not None and e.retry_after]
        retry = max(waits) if waits else DEFAULT_RETRY
    return Diagnosis(
        tenant=f.tenant_id, cause=cause, summary=summary, checks=tuple(b.checks),
        steps=catalogue.steps_for(cause, **params), consent_scopes=frozenset(granted_or_needed),
        storage_fault=f.storage_fault or f.store_error or None, retry_after=retry,
    )
