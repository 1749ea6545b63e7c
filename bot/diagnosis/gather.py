"""Collect the facts for one tenant: the store, the token manager and live Fortnox calls (§13 order).

Each live call depends on the one before (no token, no probe), so this is the only stateful step of a
diagnosis; rules.decide() judges the result without I/O.
"""
from __future__ import annotations

import asyncio
import re

from bot.aio import run_db
from bot.diagnosis.facts import Facts, Probe
from bot.fortnox.claims import decode_claims, looks_like_jwt
from bot.fortnox.client import FortnoxClient
from bot.fortnox.codes import Category
from bot.fortnox.errors import FortnoxError
from bot.fortnox.scopes import KIND_SCOPES, PROBE_SCOPE, SCOPE_PROBE_PATHS, needed_scopes
from bot.fortnox.tokens import RefreshOutcome, TokenManager

_UUIDISH = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def credential_kind(token: str | None) -> str:
    """jwt | legacy | garbled | none. Legacy Access-Tokens were UUIDs (reference §8)."""
    if token is None or not token.strip():
        return "none"
    if looks_like_jwt(token):
        return "jwt" if decode_claims(token) is not None else "garbled"
    if _UUIDISH.match(token.strip()):
        return "legacy"
    return "garbled"


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
        tenant = await run_db(self.store.tenants.get, tenant_id)   # StoreUnavailable-type errors propagate: cannot run
        if tenant is None:
            f.tenant_known = False
            return f
        f.tenant_name, f.kinds, f.expected_company = tenant.name, tuple(tenant.kinds), tenant.company_id
        # Kinds are validated on the way in; an unknown one stored by hand is ignored rather than fatal.
        f.needed = needed_scopes([k for k in tenant.kinds if k in KIND_SCOPES])

        cred = await run_db(self.store.connections.load, tenant_id)
        if cred is None:
            return f
        f.has_connection, f.mode = True, cred.mode
        if cred.decrypt_error:
            f.decrypt_error = cred.decrypt_error
            f.key_wide_decrypt_failure = await run_db(self.store.connections.other_tenants_decrypt, tenant_id) is False
            return f
        if cred.mode == "legacy":
            f.access_kind = "legacy"
            return f
        f.access_kind = credential_kind(cred.access_token)
        if f.access_kind == "legacy":
            return f
        f.has_refresh_token = bool(cred.refresh_token)
        f.grant_state, f.grant_reason = cred.state, cred.state_reason
        f.claims = decode_claims(cred.access_token) if f.access_kind == "jwt" else None
        f.granted = f.claims.scopes if f.claims and f.claims.scopes else cred.scopes

        # 1. a usable access token (refresh ahead of expiry, single-flight)
        if f.access_kind == "garbled" and not self.tokens.is_fresh(cred):
            outcome = await self.tokens.ensure_fresh(tenant_id, force=True, seen_generation=cred.generation)
        else:
            outcome = await self.tokens.ensure_fresh(tenant_id)
        cred = self._apply_refresh(f, outcome, cred)
        if f.storage_fault or f.refresh_busy:
            return f
        usable = cred.access_token if cred and f.access_kind in ("jwt", "garbled") else None
        if usable is None or (not outcome.ok and not self.tokens.is_fresh(cred)):
            return f

        # 2. the company probe; an auth refusal of an unrefreshed token earns one refresh and one retry
        probe = await self._get(tenant_id, PROBE_SCOPE, cred.access_token)
        if (not probe.ok and probe.error.category == Category.auth and not f.refreshed
                and cred.state == "active" and (cred.refresh_token or cred.mode == "service")):
            outcome = await self.tokens.ensure_fresh(tenant_id, force=True, seen_generation=cred.generation)
            cred = self._apply_refresh(f, outcome, cred)
            if outcome.ok:
                f.stale_token_auth_failure = True
                probe = await self._get(tenant_id, PROBE_SCOPE, cred.access_token)
        f.probe = probe
        if not probe.ok:
            return f

        # 3. one cheap read per granted, needed scope, and /me, side by side (one round trip deep)
        wanted = [sc for sc in sorted(f.needed) if sc != PROBE_SCOPE and sc in f.granted and sc in SCOPE_PROBE_PATHS]
        jobs = [self._get(tenant_id, sc, cred.access_token) for sc in wanted]
        want_me = "profile" in f.granted
        if want_me:
            jobs.append(self._get(tenant_id, "profile", cred.access_token))
        results = await asyncio.gather(*jobs)
        for scope, result in zip(wanted, results):
            f.resources[scope] = result
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
        if new is not None:
            f.grant_state, f.grant_reason = new.state, new.state_reason
        if outcome.ok and (outcome.attempted or outcome.waited_for_other) and new is not None:
            f.refreshed = True
            f.access_kind = credential_kind(new.access_token)
            f.claims = decode_claims(new.access_token) if f.access_kind == "jwt" else None
            f.granted = f.claims.scopes if f.claims and f.claims.scopes else new.scopes
        return new

    async def _get(self, tenant_id: str, scope: str, access_token: str) -> Probe:
        path = SCOPE_PROBE_PATHS[scope]
        result = await self.client.get(path, access_token=access_token, limit_key=tenant_id)
        return Probe(path=path, status=result.status, error=result.error, data=result.data)
