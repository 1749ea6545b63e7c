"""What Fortnox's OAuth redirect means: check the state, take the tokens, verify them, close the incident.

Nothing is written, and Fortnox's token endpoint is not called, until the state is known, unused,
unexpired, bound to this tenant and to a request that is still approved; then the state is used up
in one conditional UPDATE. Tokens are stored only for the company the tenant is known to be.
Returns a `Landing`: which page the person sees (bot/web/pages.py), never a token or Fortnox's body.
"""
from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Mapping

from bot.aio import run_db
from bot.diagnosis import catalogue
from bot.fortnox.claims import decode_claims
from bot.fortnox.codes import Category
from storage.types import utcnow

log = logging.getLogger(__name__)

MAX_STATE, MAX_CODE, MAX_ERROR = 512, 2048, 200
_REASON_PAGE = {"unknown": "invalid", "wrong_tenant": "invalid", "used": "used", "expired": "expired"}


@dataclass(frozen=True)
class Landing:
    page: str                      # a key of bot.web.pages.PAGES
    status: int
    company: str = ""              # the tenant's name: only on pages about a genuine link
    problem_en: str = ""           # what verification still found (cause title), for the verify_failed page
    problem_sv: str = ""


def _bad(value: str, limit: int) -> bool:
    return len(value) > limit or any(ord(ch) < 32 for ch in value)


class ConsentCompletion:
    def __init__(self, settings, store, runtime, incidents, notes, replayer):
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.incidents = incidents
        self.notes = notes
        self.replayer = replayer

    async def complete(self, params: Mapping[str, str]) -> Landing:
        state, code, error = (params.get(k) or "" for k in ("state", "code", "error"))
        if not (state or code or error):
            # Field report (reference §12 row 14): a locked company comes back with nothing at all.
            log.info("consent callback without any parameters")
            return Landing("not_completed", 400)
        if not state or _bad(state, MAX_STATE) or _bad(code, MAX_CODE) or _bad(error, MAX_ERROR):
            return Landing("invalid", 400)
        row = await run_db(self.store.consents.peek, state)
        if row is None:
            log.warning("consent callback with an unknown state")
            return Landing("invalid", 400)
        tenant_id, request = await self._binding(row, params.get("tenant"))
        if tenant_id is None:
            log.warning("consent callback: state of %s presented for another tenant or request", row.tenant_id)
            return Landing("invalid", 400)
        early = self._unusable(row, request)
        if early is not None:
            return Landing(early, 400)
        if not error and not code:
            return Landing("not_completed", 400)   # the link stays usable: nothing came back to use it for
        used = await run_db(self.store.consents.consume, state, tenant_id=tenant_id,
                            outcome="declined" if error else "code")
        if not used.ok:
            return Landing(_REASON_PAGE.get(used.reason, "invalid"), 400)
        tenant = await run_db(self.store.tenants.get, tenant_id)
        if tenant is None:
            return Landing("invalid", 400)
        incident_id = await self._incident_for(request, tenant_id)
        if error:
            return await self._declined(tenant, request, incident_id, error)
        return await self._exchange(tenant, request, incident_id, code, row.service_account)

    # --- checks before anything is written ---------------------------------------------------
    async def _binding(self, row, claimed_tenant: str | None):
        """(tenant the tokens would belong to, request) — or (None, _) when the bindings disagree (F-F2)."""
        request = await run_db(self.store.requests.get, row.request_id) if row.request_id else None
        if row.request_id and request is None:
            return None, None
        wanted = {t for t in (request.tenant_id if request else None, claimed_tenant) if t} or {row.tenant_id}
        tenant_id = wanted.pop()
        if wanted or not hmac.compare_digest(tenant_id.encode(), row.tenant_id.encode()):
            return None, request
        return tenant_id, request   # consume() checks it against the state once more, atomically

    @staticmethod
    def _unusable(row, request) -> str | None:
        if row.used_at is not None:
            return "used"
        if row.expires_at <= utcnow():
            return "expired"
        if request is not None and request.status != "approved":
            # Denied, expired or already completed: the link was withdrawn with its request.
            return "used" if request.status in ("consented", "verified", "failed", "declined") else "expired"
        return None

    async def _incident_for(self, request, tenant_id: str) -> str | None:
        if request is not None and request.incident_id:
            inc = await run_db(self.store.incidents.get, request.incident_id)
            if inc is not None and inc.status != "resolved":
                return inc.id
        live = await run_db(self.store.incidents.live_for_tenant, tenant_id)
        return live.id if live else None

    # --- outcomes -------------------------------------------------------------------------------
    async def _step(self, request, tenant_id: str, incident_id: str | None, *, to: str, action: str,
                    from_status: tuple[str, ...], outcome: str | None = None, detail: dict | None = None,
                    actor: str = "customer") -> None:
        permalink = await self.notes.permalink(incident_id) if incident_id else None
        if request is not None:
            await run_db(self.store.requests.advance, request.id, from_status=from_status, to=to, action=action,
                         actor=actor, outcome=outcome, detail=detail, permalink=permalink)
        else:   # a `connect` link: no request, the audit log still tells the story
            await run_db(self.store.audit.record, action, actor=actor, tenant_id=tenant_id, incident_id=incident_id,
                         detail=detail, permalink=permalink)

    async def _note(self, incident_id: str | None, *parts) -> None:
        if incident_id:
            await self.notes.note(incident_id, *parts)

    async def _declined(self, tenant, request, incident_id, error: str) -> Landing:
        await self._step(request, tenant.id, incident_id, to="declined", action="consent_declined",
                         from_status=("approved",), outcome=error[:40], detail={"error": error[:100]})
        await self._note(incident_id, "↩️ The customer did not approve the activation in Fortnox "
                                      f"(Fortnox said: {error[:100]}). The stored tokens are unchanged; "
                                      "request a new link when they are ready.")
        return Landing("cancelled", 200, company=tenant.name or tenant.id)

    async def _exchange(self, tenant, request, incident_id, code: str, service_account: bool) -> Landing:
        company = tenant.name or tenant.id
        await self._step(request, tenant.id, incident_id, to="consented", action="consent_received",
                         from_status=("approved",))
        failed = ("approved", "consented")
        result = await self.runtime.fortnox.exchange_code(code)
        if not result.ok:
            err = result.error
            down = err.category in (Category.unavailable, Category.rate_limited)
            what = err.oauth_error or str(err.category)
            await self._step(request, tenant.id, incident_id, to="failed", action="verification_failed",
                             from_status=failed, outcome="code_exchange", actor="bot",
                             detail={"stage": "code_exchange", "error": what})
            await self._note(incident_id, f"⚠️ The customer consented, but Fortnox refused the code exchange ({what}). "
                                          "Nothing was stored; request a new link.")
            return Landing("unavailable" if down else "exchange_failed", 502 if down else 400, company=company)

        tokens = result.tokens
        claims = decode_claims(tokens.access_token)
        if claims is None or claims.tenant_id is None:
            # Not a Fortnox JWT: we cannot tell whose company it is, so it is not stored.
            await self._step(request, tenant.id, incident_id, to="failed", action="verification_failed",
                             from_status=failed, outcome="code_exchange", actor="bot",
                             detail={"stage": "code_exchange", "error": "unreadable access token"})
            await self._note(incident_id, "⚠️ Fortnox answered the code exchange with an unreadable access token. "
                                          "Nothing was stored; request a new link.")
            return Landing("exchange_failed", 400, company=company)
        got = claims.tenant_id
        cred = await run_db(self.store.connections.load, tenant.id)
        known = tenant.company_id or (cred.company_id if cred else None)
        if known and str(known) != got:
            # A bureau user who picked another client company (reference §12 row 15): never store those tokens.
            if tokens.refresh_token:
                await self.runtime.fortnox.revoke(tokens.refresh_token)
            await self._step(request, tenant.id, incident_id, to="failed", action="verification_failed",
                             from_status=failed, outcome="wrong_company", actor="bot",
                             detail={"stage": "company", "expected": known, "got": got})
            await self._note(incident_id, f"⚠️ The consent came from another Fortnox company (database number {got}, "
                                          f"expected {known}) — often a bureau user who picked the wrong client in "
                                          "Digital byrå. Nothing was stored; request a new link.")
            return Landing("wrong_company", 400, company=company)

        if not known:
            await run_db(self.store.tenants.update, tenant.id, company_id=got)
        await run_db(self.store.connections.store_tokens, tenant.id, access_token=tokens.access_token,
                     refresh_token=tokens.refresh_token, expires_at=tokens.expires_at,
                     scopes=tokens.scopes or claims.scopes, mode="service" if service_account else "oauth",
                     company_id=got, user_id=claims.user_id, client_id=claims.client_id)
        return await self._verify(tenant, request, incident_id)

    async def _verify(self, tenant, request, incident_id) -> Landing:
        company = tenant.name or tenant.id
        diagnosis = await self.runtime.diagnoser.run(tenant.id, trigger="consent")
        if diagnosis.resolved:
            await self._step(request, tenant.id, incident_id, to="verified", action="verified",
                             from_status=("consented",), actor="bot", detail={"cause": str(diagnosis.cause)})
            await self._note(incident_id, "✅ Consent received and verified: Fortnox accepts the new connection "
                                          "and every check passes.")
            if incident_id:
                await self.incidents.apply(incident_id, diagnosis, actor="bot", how="verified consent",
                                           permalink=await self.notes.permalink(incident_id))
                await self.replayer.schedule(tenant_id=tenant.id, incident_id=incident_id, actor="bot")
            return Landing("success", 200, company=company)

        entry = catalogue.entry(diagnosis.cause)
        failing = "; ".join(f"{c.id}: {c.detail}" for c in diagnosis.failing_checks[:5])
        await self._step(request, tenant.id, incident_id, to="failed", action="verification_failed",
                         from_status=("consented",), outcome=str(diagnosis.cause), actor="bot",
                         detail={"stage": "diagnosis", "cause": str(diagnosis.cause)})
        await self._note(incident_id, f"⚠️ Consent received and the new tokens are stored, but verification still "
                                      f"fails: {entry.title} ({diagnosis.cause})" + (f" — {failing}" if failing else "")
                                      + ". The alert shows the new steps.")
        if incident_id:
            await self.incidents.apply(incident_id, diagnosis, actor="bot",
                                       permalink=await self.notes.permalink(incident_id))
        return Landing("verify_failed", 200, company=company, problem_en=entry.title, problem_sv=entry.title_sv)
