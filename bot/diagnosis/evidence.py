"""How evidence reads: Fortnox's answers, scopes and times as short texts for check details (no I/O)."""
from __future__ import annotations

import re
from datetime import datetime

from bot.fortnox.errors import FortnoxError

SCOPE_LABELS = {
    "invoice": "invoices", "customer": "customers", "article": "articles", "bookkeeping": "vouchers",
    "payment": "payments", "costcenter": "cost centres", "supplierinvoice": "supplier invoices",
    "supplier": "suppliers", "order": "orders", "offer": "offers", "project": "projects",
    "salary": "salaries", "companyinformation": "company information", "profile": "user profile",
}

_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")
EXCERPT_SHOWN = 120


def _excerpt(text: str) -> str:
    """A short, readable excerpt: an HTML page shows its words, not its markup."""
    if text.lstrip().startswith("<"):
        text = _SPACES.sub(" ", _TAG.sub(" ", text)).strip() or text
    return text if len(text) <= EXCERPT_SHOWN else text[: EXCERPT_SHOWN - 1] + "…"


def describe_error(err: FortnoxError) -> str:
    """Status, code and Fortnox's words (or a body excerpt): the evidence a person needs."""
    parts = []
    if err.transport:
        parts.append(f"no answer ({err.transport})")
    if err.status is not None:
        parts.append(f"HTTP {err.status}")
    if err.code is not None:
        parts.append(f"code {err.code}")
    if err.oauth_error:
        parts.append(err.oauth_error)
    text = err.message[:200] if err.message else _excerpt(err.excerpt)
    if text:
        parts.append(f'"{text}"')
    elif err.status is not None and not err.transport:
        parts.append("with an empty body")
    return " ".join(parts) or "no usable answer"


def status_text(err: FortnoxError) -> str:
    if err.transport:
        return "timeout" if err.transport == "timeout" else f"no answer: {err.transport.replace('_', ' ')}"
    return f"HTTP {err.status}" if err.status is not None else ""


def label(scope: str) -> str:
    return SCOPE_LABELS.get(scope, scope)


def span(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "at an unknown time"
    secs = int((when - now).total_seconds())
    mins = abs(secs) // 60
    text = f"{mins // 60} h {mins % 60} min" if mins >= 60 else f"{mins} min" if mins else f"{abs(secs)} s"
    return f"in {text}" if secs >= 0 else f"{text} ago"


def seconds(value: float) -> str:
    return f"{int(value)} s" if value < 120 else f"{int(value // 60)} min"


def retry_text(err: FortnoxError | None, default: float) -> str:
    """When to look again: Fortnox's Retry-After if it sent one."""
    return seconds(err.retry_after if err is not None and err.retry_after else default)
