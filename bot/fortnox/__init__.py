"""Fortnox boundary: the only package that talks to Fortnox or interprets its answers."""

from bot.fortnox.claims import Claims, decode_claims, looks_like_jwt
from bot.fortnox.client import ApiResult, FortnoxClient, TokenResult, TokenSet
from bot.fortnox.codes import RULES, Category, Rule
from bot.fortnox.errors import FortnoxError, parse_error, transport_error
from bot.fortnox.ratelimit import RateLimiter
from bot.fortnox.scopes import (
    ALL_SCOPES,
    KIND_SCOPES,
    PROBE_SCOPE,
    SCOPE_PROBE_PATHS,
    needed_scopes,
    parse_scopes,
)

__all__ = [
    "ALL_SCOPES",
    "KIND_SCOPES",
    "PROBE_SCOPE",
    "RULES",
    "SCOPE_PROBE_PATHS",
    "ApiResult",
    "Category",
    "Claims",
    "FortnoxClient",
    "FortnoxError",
    "RateLimiter",
    "Rule",
    "TokenResult",
    "TokenSet",
    "decode_claims",
    "looks_like_jwt",
    "needed_scopes",
    "parse_error",
    "parse_scopes",
    "transport_error",
]
