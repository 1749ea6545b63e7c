"""What a Slack handler gets: the bot, who clicked or typed, and where. Built from Bolt's signed payload."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ActionContext:
    bot: Any
    user_id: str              # from the signed payload (never from a button value)
    action_id: str
    value: str                # button value or selected option value
    channel_id: str
    message_ts: str
    response_url: str
    respond: Any              # Bolt's AsyncRespond (ephemeral by default)


@dataclass
class CommandContext:
    bot: Any
    user_id: str
    channel_id: str
    response_url: str
    arg: str
