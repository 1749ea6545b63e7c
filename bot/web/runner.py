"""Run the whole bot (ASGI app + worker) under uvicorn on a background thread: for tests, the demo and bench.

The socket is bound first, so the URL (and with it FORTNOX_REDIRECT_URI) is known before settings are built.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Callable

import uvicorn

from bot.aio import new_event_loop
from bot.settings import Settings


class BotServer:
    def __init__(self, make_settings: Callable[[str], Settings], *, host: str = "127.0.0.1", port: int = 0,
                 bot_kwargs: dict | None = None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self._sock = sock
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        self.settings = make_settings(self.url)
        self._bot_kwargs = bot_kwargs or {}
        self.bot = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> "BotServer":
        from bot.services import Bot
        from bot.web.app import create_app

        self.bot = Bot(self.settings, **self._bot_kwargs)
        app = create_app(self.settings, self.bot)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)

        def run() -> None:
            loop = new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._server.serve(sockets=[self._sock]))
            loop.close()

        self._thread = threading.Thread(target=run, name="bot-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the bot server did not start")
            time.sleep(0.01)
        return self

    def call(self, coro, timeout: float = 30.0):
        """Run a coroutine on the server's loop (e.g. bot.worker.drain()) and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def drain(self, timeout: float = 30.0) -> None:
        self.call(self.bot.worker.drain(timeout), timeout + 5)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> "BotServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
