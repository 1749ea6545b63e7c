"""The stand-in's memory: a fake workspace, a recorder of every call, and fault injection.

The server thread writes while tests read from their own thread (or event
loop), so every access holds one lock and readers get copies, never live objects.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

RESPONSE_URL_MAX_USES = 5  # Slack: a response_url works 5 times (within 30 min)


@dataclass(frozen=True)
class Call:
    method: str  # Web API method, or "response_url" for a POST to a response_url
    args: dict  # parsed form/JSON/query; JSON-encoded fields (blocks…) decoded; token removed
    token: str | None
    at: float  # time.time() when received
    status: int  # HTTP status answered
    error: str | None = None  # Slack error code answered (ok:false, 429, used_url…); None when ok
    key: str | None = None  # the response_url key, for method "response_url"


@dataclass
class Message:
    channel: str
    ts: str
    text: str | None
    blocks: list | None
    thread_ts: str | None = None  # set on thread replies: the parent's ts
    updates: int = 0
    history: list[dict] = field(default_factory=list)  # previous versions, oldest first: {"text", "blocks"}
    metadata: dict | None = None  # message metadata ({"event_type", "event_payload"}), as posted


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: int | None
    times: int


class StandinState:
    def __init__(
        self,
        bot_token: str = "xoxb-test",
        *,
        team_id: str = "T_TEST",
        team: str = "Fortnox Bot Demo",
        bot_user_id: str = "U_BOT",
        bot_id: str = "B_BOT",
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.team = team
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.lock = threading.RLock()
        self._last_us = 0  # not reset: ts stay unique for the stand-in's lifetime
        self.reset()

    def reset(self) -> None:
        """Forget calls, messages, responses and faults; back to default settings."""
        with self.lock:
            self._calls: list[Call] = []
            self._messages: dict[tuple[str, str], Message] = {}
            self._responses: dict[str, list[dict]] = defaultdict(list)
            self._response_uses: dict[str, int] = defaultdict(int)
            self._response_targets: dict[str, tuple[str | None, str | None]] = {}
            self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
            self._channel_errors: dict[str, str] = {}
            self._post_times: dict[str, deque[float]] = defaultdict(deque)
            self.latency = 0.0  # seconds added to every call
            self.post_rate_limit: tuple[int, float] | None = None  # (n, seconds) per channel
            self.usergroups: dict[str, list[str]] = {}

    # --- configuration (test side) -------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` fail; several fail() calls queue up in order."""
        with self.lock:
            self._faults[method].append(_Fault(status, error, retry_after, times))

    def channel_error(self, channel: str, error: str) -> None:
        """Every chat.postMessage to `channel` answers ok:false with `error`."""
        with self.lock:
            self._channel_errors[channel] = error

    def set_response_target(self, key: str, channel: str | None, message_ts: str | None) -> None:
        """Which message a response_url belongs to (for replace_original / delete_original / in_channel)."""
        with self.lock:
            self._response_targets[key] = (channel, message_ts)

    # --- reading (test side): copies ------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self.lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self._calls if c.method == method]

    @property
    def messages(self) -> dict[tuple[str, str], Message]:
        with self.lock:
            return copy.deepcopy(self._messages)

    def thread(self, channel: str, ts: str) -> list[Message]:
        with self.lock:
            replies = [m for m in self._messages.values() if m.channel == channel and m.thread_ts == ts]
            return copy.deepcopy(sorted(replies, key=lambda m: float(m.ts)))

    def responses(self, key: str) -> list[dict]:
        with self.lock:
            return copy.deepcopy(self._responses.get(key, []))

    # --- used by the server (callers hold the lock) ---------------------------------

    def record(self, call: Call) -> None:
        with self.lock:
            self._calls.append(call)

    def take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.popleft()
        return fault

    def channel_error_for(self, channel: str) -> str | None:
        return self._channel_errors.get(channel)

    def post_retry_after(self, channel: str, now: float) -> int | None:
        """Seconds to wait if this post would exceed post_rate_limit, else None (and count it)."""
        if self.post_rate_limit is None:
            return None
        limit, window = self.post_rate_limit
        times = self._post_times[channel]
        while times and now - times[0] >= window:
            times.popleft()
        if len(times) >= limit:
            return max(1, math.ceil(window - (now - times[0])))
        times.append(now)
        return None

    def next_ts(self) -> str:
        # Slack ts: epoch seconds "." 6 digits; here strictly increasing so each is unique.
        self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
        seconds, micros = divmod(self._last_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def channel_history(self, channel: str) -> list[Message]:
        """Top-level messages of a channel, newest first (conversations.history)."""
        return sorted((m for m in self._messages.values() if m.channel == channel and not m.thread_ts),
                      key=lambda m: float(m.ts), reverse=True)

    def find(self, channel: str, ts: str) -> Message | None:
        return self._messages.get((channel, ts))

    def post(self, channel: str, text: str | None, blocks: list | None, thread_ts: str | None,
             metadata: dict | None = None) -> Message:
        if thread_ts:
            parent = self._messages.get((channel, thread_ts))
            if parent is not None and parent.thread_ts:  # a reply to a reply joins the parent's thread
                thread_ts = parent.thread_ts
        message = Message(channel, self.next_ts(), text, blocks, thread_ts or None, metadata=metadata)
        self._messages[(channel, message.ts)] = message
        return message

    def update(self, message: Message, text: str | None, blocks: list | None) -> None:
        message.history.append({"text": message.text, "blocks": copy.deepcopy(message.blocks)})
        message.text, message.blocks = text, blocks
        message.updates += 1

    def delete(self, channel: str, ts: str) -> None:
        self._messages.pop((channel, ts), None)

    def use_response_url(self, key: str) -> bool:
        """Count one use; False when the URL is used up."""
        if self._response_uses[key] >= RESPONSE_URL_MAX_USES:
            return False
        self._response_uses[key] += 1
        return True

    def response_target(self, key: str) -> tuple[str | None, str | None]:
        return self._response_targets.get(key, (None, None))

    def add_response(self, key: str, body: dict[str, Any]) -> None:
        self._responses[key].append(body)
