"""Run the stand-in as a real HTTP server (uvicorn) on a background thread.

The socket is bound here before the thread starts, so port 0 yields a free
port with no race, and `url` is known at once. The server has its own event
loop, so it also serves a bot running in the test's loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType

import uvicorn

from .app import create_app
from .state import Call, Message, StandinState

_POLL = 0.01


class SlackStandin:
    def __init__(
        self,
        bot_token: str = "xoxb-test",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state: StandinState | None = None,
    ) -> None:
        self.state = state or StandinState(bot_token)
        self.host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.url = ""
        self.api_url = ""

    # --- lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> SlackStandin:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        port = sock.getsockname()[1]
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"http://{host}:{port}"
        self.api_url = self.url + "/api/"  # trailing slash: slack_sdk urljoins method names
        config = uvicorn.Config(
            create_app(self.state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server, self._sock = uvicorn.Server(config), sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="slack-standin", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Slack stand-in did not start on {self.url}")
            time.sleep(_POLL)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> SlackStandin:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- helpers for tests and the demo -----------------------------------------------

    def response_url(self, key: str, *, channel: str | None = None, message_ts: str | None = None) -> str:
        """A URL that records what is POSTed to it. With channel (+ message_ts of a channel
        message) it behaves like Slack's: in_channel posts there, replace_original edits it."""
        if channel is not None:
            self.state.set_response_target(key, channel, message_ts)
        return f"{self.url}/response/{key}"

    @property
    def calls(self) -> list[Call]:
        return self.state.calls

    def calls_to(self, method: str) -> list[Call]:
        return self.state.calls_to(method)

    @property
    def messages(self) -> dict[tuple[str, str], Message]:
        return self.state.messages

    def thread(self, channel: str, ts: str) -> list[Message]:
        return self.state.thread(channel, ts)

    def responses(self, key: str) -> list[dict]:
        return self.state.responses(key)

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Blocks this thread. From async code running the bot in the same loop, use async_wait_for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(calls := self.calls_to(method)) >= count:
                return calls
            time.sleep(_POLL)
        return self._timed_out(method, count, timeout)

    async def async_wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Like wait_for, but yields to the event loop while polling."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(calls := self.calls_to(method)) >= count:
                return calls
            await asyncio.sleep(_POLL)
        return self._timed_out(method, count, timeout)

    def _timed_out(self, method: str, count: int, timeout: float) -> list[Call]:
        calls = self.calls_to(method)
        if len(calls) >= count:
            return calls
        recorded = [f"{c.method}({c.status}{', ' + c.error if c.error else ''})" for c in self.calls]
        raise AssertionError(
            f"expected {count} {method} call(s) within {timeout}s, got {len(calls)}; recorded: {recorded}"
        )
