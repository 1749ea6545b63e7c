"""Fortnox OAuth scopes: which export kind needs which scope, and one cheap probe per scope."""

from __future__ import annotations

import re
from collections.abc import Iterable

# CONTRACT.md "Export kinds and the scopes they need".
KIND_SCOPES: dict[str, str] = {
    "invoice": "invoice",
    "customer": "customer",
    "article": "article",
    "voucher": "bookkeeping",
    "payment": "payment",
    "costcenter": "costcenter",
    "supplierinvoice": "supplierinvoice",
    "supplier": "supplier",
    "order": "order",
    "offer": "offer",
    "project": "project",
    "salary": "salary",
}

# Every tenant also needs this: /3/companyinformation is the bot's health probe.
PROBE_SCOPE = "companyinformation"

# Reference §6, Fortnox's own table (note: "noxfinansinvoice", not "...finance...").
ALL_SCOPES: frozenset[str] = frozenset(
    "archive article bookkeeping companyinformation connectfile costcenter currency customer inbox invoice "
    "noxfinansinvoice offer order payment price print profile project salary settings supplier supplierinvoice "
    "timereporting".split()
)

# One cheap GET (relative to FORTNOX_API_URL) that needs exactly that scope.
SCOPE_PROBE_PATHS: dict[str, str] = {
    "invoice": "/invoices",
    "customer": "/customers",
    "article": "/articles",
    "bookkeeping": "/vouchers",
    "payment": "/invoicepayments",
    "costcenter": "/costcenters",
    "supplierinvoice": "/supplierinvoices",
    "supplier": "/suppliers",
    "order": "/orders",
    "offer": "/offers",
    "project": "/projects",
    "salary": "/employees",
    "companyinformation": "/companyinformation",
    "profile": "/me",
    "settings": "/settings/company",
}

_SEPARATORS = re.compile(r"[\s,]+")


def needed_scopes(kinds: Iterable[str]) -> frozenset[str]:
    """Scopes a tenant with these export kinds needs (always including the probe scope)."""
    if isinstance(kinds, str):  # a lone "invoice" must not become {"i","n",...}
        kinds = [kinds]
    scopes = {PROBE_SCOPE}
    for kind in kinds:
        try:
            scopes.add(KIND_SCOPES[kind])
        except (KeyError, TypeError):
            raise ValueError(f"unknown export kind: {kind!r}") from None
    return frozenset(scopes)


def parse_scopes(text: str | None) -> frozenset[str]:
    """'a b', 'a,b', 'a, b' -> {'a','b'}. Scopes are case-sensitive, so no case folding."""
    if not text:
        return frozenset()
    return frozenset(s for s in _SEPARATORS.split(text) if s)
