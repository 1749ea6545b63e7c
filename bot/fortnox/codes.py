"""Everything the bot knows about Fortnox error codes and texts, as one table (reference §7).

Classification lives in errors.py; this module is data plus lookups. A rule's `match` is either
a numeric Fortnox code or a regular expression searched case-insensitively in the error's text
fields (message, error_description, error). Text rules are tried in table order, so specific
phrases come before generic ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    ok = "ok"
    auth = "auth"  # token rejected: refresh once, retry, then decide
    credential_format = "credential_format"  # 2000311: missing/garbled credential
    scope = "scope"  # 2000663: token valid, scope or right missing
    license = "license"
    permission = "permission"
    not_found = "not_found"  # data errors, not auth
    bad_headers = "bad_headers"  # our Accept/Content-Type are wrong
    rate_limited = "rate_limited"
    unavailable = "unavailable"  # Fortnox-side failure: 5xx, timeout, junk
    invalid_refresh = "invalid_refresh"  # refresh token used/expired/revoked
    invalid_client = "invalid_client"  # our client id/secret rejected
    redirect_mismatch = "redirect_mismatch"
    invalid_scope = "invalid_scope"  # scope not registered on the app
    service_account_not_allowed = "service_account_not_allowed"
    bad_request = "bad_request"  # a 4xx we cannot place
    unknown = "unknown"


@dataclass(frozen=True)
class Rule:
    match: int | str  # Fortnox code, or a case-insensitive regex for the text
    category: Category
    meaning: str


C = Category

RULES: tuple[Rule, ...] = (
    # --- numeric codes ---
    Rule(2000310, C.auth, "Ogiltig inloggning: bearer expired, revoked, garbled, legacy or another app's"),
    Rule(2000311, C.credential_format, "Kan inte logga in, access-token eller client-secret saknas: missing or malformed credential"),
    Rule(2003275, C.auth, "Ej autentiserad: not authenticated"),
    Rule(2000663, C.scope, "Har inte behörighet för scope: token lacks the scope or user lacks the right"),
    Rule(2001101, C.license, "Det finns ingen aktiv licens för önskat scope: module/integration licence missing"),
    Rule(2001103, C.license, "Api-licens saknas: no API licence"),
    Rule(2001339, C.permission, "the connected user may not list invoices"),
    Rule(2001427, C.permission, "no right to create accruals"),
    Rule(2003330, C.permission, "no right to list payments"),
    Rule(1000030, C.bad_headers, "invalid Accept header"),
    Rule(1000031, C.bad_headers, "invalid Content-Type header"),
    Rule(1000003, C.unavailable, "Fortnox system error"),
    Rule(2000423, C.not_found, "Kan inte hitta ...: not-found data error"),
    Rule(2001304, C.not_found, "Kunde inte hitta ...: not-found data error"),
    Rule(2000204, C.not_found, "Kan inte hitta ...: not-found data error"),
    Rule(2000433, C.not_found, "Kan inte hitta ...: not-found data error"),
    Rule(2001302, C.not_found, "Kunde inte hitta ...: not-found data error"),
    Rule(2000428, C.not_found, "Kan inte hitta ...: not-found data error"),
    # --- texts, most specific first ---
    Rule(r"invalid[ _]refresh[ _]token", C.invalid_refresh, "refresh token used, expired or revoked"),
    Rule(r"auth code or client ?id supplied is invalid", C.invalid_client, "OAuth not enabled for this client id"),
    Rule(r"does not allow service account", C.service_account_not_allowed, "portal not set to 'Only administrator'"),
    Rule(r"redirect", C.redirect_mismatch, "redirect_uri differs from the registered one"),
    Rule(r"\binvalid_scope\b", C.invalid_scope, "requested scope not registered on the app"),
    Rule(r"har inte behörighet för scope", C.scope, "token lacks the scope (text of 2000663)"),
    Rule(r"saknar (behörighet|rättighet)", C.permission, "user's role or licence too weak"),
    Rule(r"missing\.rights", C.permission, "user's role or licence too weak (newer /api)"),
    Rule(r"ingen aktiv licens|api-licens saknas|no active licen[cs]e", C.license, "licence missing (text of 2001101/2001103)"),
    Rule(r"access-token eller client-secret saknas", C.credential_format, "text of 2000311"),
    Rule(r"ogiltig inloggning|\binvalid login\b|ej autentiserad", C.auth, "text of 2000310/2003275"),
    Rule(r"\bunauthori[sz]ed\b", C.auth, "expired bearer without envelope"),
    Rule(r"\b(kan|kunde) inte hitta\b", C.not_found, "not-found data error"),
    Rule(r"too many requests|rate limit", C.rate_limited, "over 25 requests / 5 s"),
    Rule(r"service unavailable|temporarily unavailable|under maintenance", C.unavailable, "Fortnox-side outage"),
)

# RFC 6749 "error" values from /token (meanings assumed per RFC; Fortnox documents none).
OAUTH_ERRORS: dict[str, Category] = {
    "invalid_grant": C.invalid_refresh,
    "invalid_client": C.invalid_client,
    "invalid_scope": C.invalid_scope,
}

CODE_RULES: dict[int, Rule] = {r.match: r for r in RULES if isinstance(r.match, int)}
_TEXT_RULES: tuple[tuple[re.Pattern[str], Rule], ...] = tuple(
    (re.compile(r.match, re.IGNORECASE), r) for r in RULES if isinstance(r.match, str)
)


def rule_for_code(code: int | None) -> Rule | None:
    return CODE_RULES.get(code) if code is not None else None


def rule_for_text(text: str | None) -> Rule | None:
    if not text:
        return None
    for pattern, rule in _TEXT_RULES:
        if pattern.search(text):
            return rule
    return None
