"""`fortnox-bot serve`: settings check, migrations, the listening socket, then uvicorn."""
from __future__ import annotations

import logging
import socket
import sys

import uvicorn

from bot.settings import load_settings

log = logging.getLogger(__name__)


def _listen(host: str, port: int) -> socket.socket:
    """Bind before saying "listening" (a taken port is then one clear line, not a line and a traceback)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def serve() -> int:
    settings = load_settings(need="serve")   # SettingsError -> one line from the CLI
    from bot.web.app import create_app

    try:
        sock = _listen(settings.host, settings.port)
    except OSError as exc:
        print(f"fortnox-bot: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc} "
              "(HOST, PORT)", file=sys.stderr)
        return 1
    log.info("starting on %s:%s", settings.host, settings.port)
    app = create_app(settings)
    jobs = "" if settings.run_jobs else "; jobs left to `fortnox-bot worker` (FORTNOX_BOT_RUN_JOBS=false)"
    print(f"fortnox-bot listening on http://{settings.host}:{settings.port} "
          f"({'Socket Mode' if settings.socket_mode else 'HTTP mode'}{jobs})", file=sys.stderr)
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
