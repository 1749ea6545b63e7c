"""`python -m bench.serve`: the real bot (BotServer: HTTP app + job worker) alone in this process.

Settings come from the environment (CONTRACT.md names). Prints the bot's URL as its first line, then
runs until SIGTERM, or until standard input closes (the bench died: do not outlive it).
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from bot.settings import load_settings
from bot.web.runner import BotServer


def main() -> int:
    env = dict(os.environ)
    server = BotServer(lambda url: load_settings(env={**env, "FORTNOX_REDIRECT_URI": f"{url}/oauth/fortnox/callback"},
                                                 need="serve"))
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print(server.url, flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
