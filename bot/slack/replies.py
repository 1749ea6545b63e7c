"""Ready-made ephemeral answers and queued thread replies, so handlers stay a few lines long."""
from __future__ import annotations

from bot.aio import run_db
from bot.cards.model import Mention, Text
from bot.slack.delivery import text_to_json
from bot.slack.render import render_text_reply


def ephemeral(text: Text | str) -> dict:
    body = render_text_reply(text)
    return {"response_type": "ephemeral", "replace_original": False, **body}


async def thread_note(bot, incident_id: str, *parts) -> None:
    """Queue a reply in the incident's thread (ordered after the alert's own updates)."""
    target = incident_id
    inc = await run_db(bot.store.incidents.get, incident_id)
    if inc is not None and inc.parent_id and not inc.message_ts:
        target = inc.parent_id
    await bot.enqueue("slack.reply", {"incident": incident_id, "text": text_to_json(Text.of(*parts))}, lane=f"msg:{target}")


def who(user_id: str) -> Mention:
    return Mention(user_id)


def plural(n: int, word: str) -> str:
    """E.g. "1 tenant", "40 tenants"."""
    return f"{n} {word}{'' if n == 1 else 's'}"
