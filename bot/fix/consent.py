"""Consent links: a fresh single-use state bound to tenant (and request), with the scopes the tenant needs."""
from __future__ import annotations

from datetime import timedelta

from bot.fortnox.client import build_consent_url
from bot.fortnox.scopes import PROBE_SCOPE, needed_scopes, KIND_SCOPES


def link_scopes(settings, tenant, granted=frozenset()) -> frozenset[str]:
    """What a consent asks for: the tenant's needs and what it already has, limited to FORTNOX_SCOPES."""
    needed = needed_scopes([k for k in tenant.kinds if k in KIND_SCOPES])
    wanted = needed | frozenset(granted) | {PROBE_SCOPE}
    if "profile" in settings.fortnox_scopes:
        wanted |= {"profile"}
    return frozenset(wanted & settings.fortnox_scopes)


def consent_link(settings, store, tenant, *, request_id: str | None, created_by: str | None,
                 granted=frozenset()) -> str:
    scopes = link_scopes(settings, tenant, granted)
    state = store.consents.issue(tenant_id=tenant.id, scopes=scopes, request_id=request_id, created_by=created_by,
                                 service_account=tenant.service_account,
                                 ttl=timedelta(hours=settings.consent_link_ttl_hours))
    return build_consent_url(auth_url=settings.fortnox_auth_url, client_id=settings.fortnox_client_id,
                             redirect_uri=settings.fortnox_redirect_uri, state=state, scopes=scopes,
                             service_account=tenant.service_account)
