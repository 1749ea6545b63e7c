"""The facts a diagnosis is decided from. Gathered by gather.py (I/O), judged by rules.py (pure)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.fortnox.claims import Claims
from bot.fortnox.codes import Category
from bot.fortnox.errors import FortnoxError

# Errors that prove the token itself was accepted (a scope, licence or right is missing instead).
TOKEN_ACCEPTED = frozenset({Category.scope, Category.license, Category.permission})


@dataclass(frozen=True)
class Probe:
    """One live API call's outcome."""

    path: str
    status: int | None
    error: FortnoxError | None = None
    data: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def token_accepted(self) -> bool:
        return self.ok or (self.error is not None and self.error.category in TOKEN_ACCEPTED)


@dataclass
class Facts:
    tenant_id: str
    tenant_known: bool = True
    tenant_name: str = ""
    kinds: tuple[str, ...] = ()
    needed: frozenset[str] = frozenset()          # scopes the tenant's exports need
    requestable: frozenset[str] = frozenset()     # scopes our consent links ask for (FORTNOX_SCOPES)
    expected_company: str | None = None           # the tenant's known Fortnox company id
    configured_client_id: str = ""
    config_problems: list[tuple[str, str]] = field(default_factory=list)   # (setting, problem)
    store_error: str | None = None                # the store failed while reading (not a Fortnox cause)

    # stored credential
    has_connection: bool = False
    mode: str | None = None                       # oauth | service | legacy
    decrypt_error: str | None = None
    key_wide_decrypt_failure: bool = False        # ENCRYPTION_KEY is wrong, not this row
    access_kind: str | None = None                # jwt | legacy | garbled | none
    claims: Claims | None = None                  # of the stored access token (before any refresh)
    expires_at: datetime | None = None            # stored expiry of that token
    has_refresh_token: bool = False
    grant_state: str | None = None                # active | dead | rotation_lost, as stored before this run
    grant_reason: str | None = None
    client_mismatch: bool = False                 # the token belongs to another client id: no live calls
    refresh_blocked: str | None = None            # why no token request could be sent (bot settings)

    # refresh (this run)
    refresh_attempted: bool = False
    refresh_ok: bool | None = None
    refresh_error: FortnoxError | None = None
    refresh_dead_reason: str | None = None
    refresh_busy: bool = False
    refresh_by_other: bool = False
    storage_fault: str | None = None
    refreshed: bool = False                       # the token in use now came from a refresh during this run
    stale_token_auth_failure: bool = False        # an unexpired-looking token was refused, then refreshed
    refused_probe: Probe | None = None            # the probe that refused the stale token

    # live checks
    probe: Probe | None = None                    # /companyinformation with the current token
    resources: dict[str, Probe] = field(default_factory=dict)   # scope -> probe of its resource
    me: Probe | None = None                       # /me (profile scope)
    granted: frozenset[str] = frozenset()         # scopes the current token carries

    reported: FortnoxError | None = None          # what the failing export saw (webhook body)
