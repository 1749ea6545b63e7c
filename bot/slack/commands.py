"""Parsing `/fortnox …` text and finding tenants the way people type them."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

# Slack's clients turn quotes into typographic ones; people paste ids with stray spaces.
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'", "«": '"', "»": '"',
                         "\u00a0": " ", "\u2009": " ", "\u200b": "",
                         # control characters: nobody types them, and PostgreSQL cannot compare NUL
                         **{chr(c): " " for c in range(32) if chr(c) not in "\t\n\r"}, "\x7f": " "})

SUBCOMMANDS = ("diagnose", "status", "reactivate", "help")


@dataclass(frozen=True)
class Command:
    name: str          # one of SUBCOMMANDS, or "" for an unknown word
    arg: str           # the rest, cleaned (tenant id or name)
    raw: str


def parse(text: str | None) -> Command:
    cleaned = (text or "").translate(_QUOTES).strip()
    if not cleaned:
        return Command("help", "", "")
    word, _, rest = cleaned.partition(" ")
    name = word.lower()
    arg = " ".join(rest.split()).strip().strip("\"'").strip()
    return Command(name if name in SUBCOMMANDS else "", arg, cleaned)


def suggest(query: str, candidates: list[tuple[str, str]], n: int = 3) -> list[str]:
    """Near misses among tenant ids and names, for "did you mean …"."""
    q = query.lower()
    by_key: dict[str, str] = {}
    for tid, name in candidates:
        by_key.setdefault(tid.lower(), tid)
        if name:
            by_key.setdefault(name.lower(), tid)
    matches = difflib.get_close_matches(q, list(by_key), n=n * 2, cutoff=0.6)
    prefix = [k for k in by_key if k.startswith(q) and k not in matches] if len(q) >= 2 else []
    out: list[str] = []
    for key in matches + sorted(prefix):
        tid = by_key[key]
        if tid not in out:
            out.append(tid)
    return out[:n]


HELP = """*Fortnox bot* — diagnoses and fixes Fortnox integration logins.
• `/fortnox diagnose <tenant>` — check a tenant's Fortnox connection now (id or name)
• `/fortnox status` — open incidents
• `/fortnox reactivate <tenant>` — request a consent link for a tenant (an admin approves it)
• `/fortnox help` — this help"""


def escape_for_help(raw: str) -> str:
    from bot.slack.escape import escape_mrkdwn

    return f"Unknown command “{escape_mrkdwn(raw)}”." if raw else "Tell me what to do:"
