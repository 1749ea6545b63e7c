"""Collect the facts for one tenant: the store, the token manager and live Fortnox calls (§13 order).

Each live call depends on the one before (no token, no probe), so this is the only stateful step of a
diagnosis; rules.decide() judges the result without I/O.
"""
from __future__ import annotations

import asyncio
import re

from bot.aio import run_db
from bot.diagnosis.facts import Facts, Probe
from bot.fortnox.claims import Claims, decode_claims, looks_like_jwt
from bot.fortnox.client import FortnoxClient
from bot.fortnox.codes import Category
from bot.fortnox.errors import FortnoxError
from bot.fortnox.scopes import KIND_SCOPES, PROBE_SCOPE, SCOPE_PROBE_PATHS, needed_scopes
from bot.fortnox.tokens import RefreshOutcome, TokenManager

_UUIDISH = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
# Without these no token request can be authenticated: sending one would only earn invalid_client.
_CLIENT_SETTINGS = ("FORTNOX_CLIENT_ID", "FORTNOX_CLIENT_SECRET")


def credential_kind(token: str | None) -> str:
    """jwt | legacy | garbled | none. Legacy Access-Tokens were UUIDs (reference §8)."""
    return classify(token)[0]


def classify(token: str | None) -> tuple[str, Claims | None]:
    """(credential_kind, the JWT's claims): one decode serves both."""
    if token is None or not token.strip():
        return "none", None
    if looks_like_jwt(token):
        claims = decode_claims(token)
        return ("jwt" if claims is not None else "garbled"), claims
    if _UUIDISH.match(token.strip()):
        return "legacy", None
    return "garbled", None


class Gatherer:
    def __init__(self, store, client: FortnoxClient, tokens: TokenManager, settings):
        self.store = store
        self.client = client
        self.tokens = tokens
        self.settings = settings

    def _config_problems(self) -> list[tuple[str, str]]:
        s = self.settings
        problems = []
        for name, value in (("FORTNOX_CLIENT_ID", s.fortnox_client_id), ("FORTNOX_CLIENT_SECRET", s.fortnox_client_secret),
                            ("FORTNOX_REDIRECT_URI", s.fortnox_redirect_uri)):
            if not value:
                problems.append((name, "is not set"))
        return problems

    async def gather(self, tenant_id: str, reported: FortnoxError | None = None) -> Facts:
        s = self.settings
        f = Facts(tenant_id=tenant_id, requestable=s.fortnox_scopes, configured_client_id=s.fortnox_client_id,
                  config_problems=self._config_problems(), reported=reported)
        blocked = [name for name, _ in f.config_problems if name in _CLIENT_SETTINGS]
        if blocked:
            f.refresh_blocked = f"{' and '.join(blocked)} not set"
        tenant, cred = await run_db(self._load, tenant_id)   # store errors propagate: cannot run
        if tenant is None:
            f.tenant_known = False
            return f
        f.tenant_name, f.kinds, f.expected_company = tenant.name, tuple(tenant.kinds), tenant.company_id
        # Kinds are validated on the way in; an unknown one stored by hand is ignored rather than fatal.
        f.needed = needed_scopes([k for k in tenant.kinds if k in KIND_SCOPES])

        if cred is None:
            return f
        f.has_connection, f.mode = True, cred.mode
        if cred.decrypt_error:
            f.decrypt_error = cred.decrypt_error
            f.key_wide_decrypt_failure = await run_db(self.store.connections.key_mismatch, tenant_id)
            return f
        if cred.mode == "legacy":
            f.access_kind = "legacy"
            return f
        f.access_kind, claims = classify(cred.access_token)
        if f.access_kind == "legacy":
            return f
        f.has_refresh_token = bool(cred.refresh_token)
        f.grant_state, f.grant_reason = cred.state, cred.state_reason
        f.expires_at = cred.expires_at
        f.claims = claims
        f.granted = f.claims.scopes if f.claims and f.claims.scopes else cred.scopes
        if f.claims and f.claims.client_id and s.fortnox_client_id and f.claims.client_id != s.fortnox_client_id:
            # Another app's tokens: refreshing them with our client id could only fail or burn them.
            f.client_mismatch = True
            return f
        renewable = cred.mode == "service" or f.has_refresh_token
        if cred.state != "active" or (f.access_kind != "jwt" and not renewable):
            return f

        # 1. a usable access token: refresh ahead of expiry (single-flight), or now if it is unreadable
        if f.access_kind != "jwt" or not self.tokens.is_fresh(cred):
            if f.refresh_blocked:
                if f.access_kind != "jwt":
                    return f
            else:
                outcome = await self.tokens.ensure_fresh(tenant_id, force=f.access_kind != "jwt",
                                                         seen_generation=cred.generation)
                cred = self._apply_refresh(f, outcome, cred)
                if not outcome.ok:
                    return f   # the refresh check says why; a probe would only repeat it

        # 2. the company probe; an auth refusal of an unrefreshed token earns one refresh and one retry
        probe = await self._get(tenant_id, PROBE_SCOPE, cred.access_token)
        if (probe.error is not None and probe.error.category == Category.auth and not f.refreshed
                and not f.refresh_blocked and renewable):
            f.refused_probe = probe
            outcome = await self.tokens.ensure_fresh(tenant_id, force=True, seen_generation=cred.generation)
            cred = self._apply_refresh(f, outcome, cred)
            if not outcome.ok:
                f.probe = probe
                return f
            f.stale_token_auth_failure = True
            probe = await self._get(tenant_id, PROBE_SCOPE, cred.access_token)
        f.probe = probe
        if not probe.token_accepted:
            return f

        # 3. one cheap read per granted, needed scope, and /me, side by side (one round trip deep).
        # They run even when the probe hit a scope or licence error: the token itself works (F-D5).
        wanted = [sc for sc in sorted(f.needed) if sc != PROBE_SCOPE and sc in f.granted and sc in SCOPE_PROBE_PATHS]
        want_me = "profile" in f.granted
        jobs = [self._get(tenant_id, sc, cred.access_token) for sc in wanted]
        if want_me:
            jobs.append(self._get(tenant_id, "profile", cred.access_token))
        results = await asyncio.gather(*jobs)
        f.resources = dict(zip(wanted, results))
        if want_me:
            f.me = results[-1]
        return f

    def _apply_refresh(self, f: Facts, outcome: RefreshOutcome, cred):
        if outcome.attempted:
            f.refresh_attempted = True
            f.refresh_ok = outcome.ok
            f.refresh_error = outcome.error
        f.refresh_busy = f.refresh_busy or outcome.busy
        f.refresh_by_other = f.refresh_by_other or outcome.waited_for_other
        if outcome.storage_fault:
            f.storage_fault = outcome.storage_fault
        if outcome.dead_reason:
            f.refresh_dead_reason = outcome.dead_reason
        new = outcome.credentials or cred
        if outcome.ok and (outcome.attempted or outcome.waited_for_other) and new is not None:
            f.refreshed = True
            claims = decode_claims(new.access_token)
            f.granted = claims.scopes if claims and claims.scopes else new.scopes
        return new if outcome.ok else cred

    def _load(self, tenant_id: str):
        """The tenant and its credentials, in one trip to the store's thread."""
        tenant = self.store.tenants.get(tenant_id)
        return tenant, (self.store.connections.load(tenant_id) if tenant is not None else None)

    async def _get(self, tenant_id: str, scope: str, access_token: str) -> Probe:
        path = SCOPE_PROBE_PATHS[scope]
        result = await self.client.get(path, access_token=access_token, limit_key=tenant_id)
        return Probe(path=path, status=result.status, error=result.error, data=result.data)
