"""Find an alert that an interrupted attempt already posted, so a retry does not post it twice.

Slack has no idempotency key for chat.postMessage: when the bot dies, or its request times out, after
Slack took the post, the ts is lost with it. So each alert carries message metadata naming its incident,
and a retry of a post that was started looks for that message in the channel's recent history first.
"""
from __future__ import annotations

import logging
from datetime import datetime

from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

ALERT_EVENT = "fortnox_bot_alert"
LOOKBACK_SECONDS = 120   # clocks of the bot and Slack differ a little
MAX_PAGES = 5


def alert_metadata(incident_id: str) -> dict:
    return {"event_type": ALERT_EVENT, "event_payload": {"incident": incident_id}}


def _is_ours(message: dict, incident_id: str) -> bool:
    meta = message.get("metadata") or {}
    top_level = message.get("thread_ts") in (None, message.get("ts"))
    return (top_level and meta.get("event_type") == ALERT_EVENT
            and (meta.get("event_payload") or {}).get("incident") == incident_id)


async def find_alert(slack, channels, incident_id: str, since: datetime) -> tuple[str, str] | None:
    """(channel, ts) of the incident's alert posted after `since`, or None.

    Slack's transient errors propagate (the caller retries later); a channel the bot cannot read
    (e.g. a missing history scope) is skipped, which at worst allows a duplicate, never a lost alert.
    """
    oldest = f"{since.timestamp() - LOOKBACK_SECONDS:.6f}"
    for channel in dict.fromkeys(c for c in channels if c):
        cursor = None
        for _ in range(MAX_PAGES):
            try:
                resp = await slack.conversations_history(channel=channel, oldest=oldest, limit=200, cursor=cursor,
                                                         include_all_metadata=True)
            except SlackApiError as exc:
                if exc.response.status_code == 429 or exc.response.status_code >= 500:
                    raise
                log.warning("cannot look for an earlier post of %s in %s: %s", incident_id, channel,
                            exc.response.get("error"))
                break
            for message in resp.get("messages") or []:
                if _is_ours(message, incident_id):
                    return channel, message["ts"]
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not resp.get("has_more") or not cursor:
                break
    return None
