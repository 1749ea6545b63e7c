"""The fix loop's `Notes` port on Slack: history lines in the alert's thread, its permalink for the audit log."""
from __future__ import annotations

import logging

from bot.aio import run_db
from bot.slack.replies import thread_note

log = logging.getLogger(__name__)


class SlackNotes:
    def __init__(self, bot):
        self.bot = bot
        self._links: dict[str, str] = {}    # an alert's permalink never changes

    async def note(self, incident_id: str, *parts) -> None:
        await thread_note(self.bot, incident_id, *parts)

    async def permalink(self, incident_id: str) -> str | None:
        if incident_id in self._links:
            return self._links[incident_id]
        inc = await run_db(self.bot.store.incidents.get, incident_id)
        if inc is None or not inc.message_ts:
            return None
        try:
            resp = await self.bot.slack.chat_getPermalink(channel=inc.channel, message_ts=inc.message_ts)
        except Exception as exc:   # the audit row is still written, just without the link
            log.warning("chat.getPermalink for %s failed: %s", incident_id, type(exc).__name__)
            return None
        link = resp.get("permalink")
        if link:
            if len(self._links) > 2000:   # a cache, not a record: keep it small
                self._links.clear()
            self._links[incident_id] = link
        return link
