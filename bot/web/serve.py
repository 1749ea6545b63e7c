"""`fortnox-bot serve`: settings check, migrations, then uvicorn."""
from __future__ import annotations

import logging
import sys

import uvicorn

from bot.settings import load_settings


def serve() -> int:
    settings = load_settings(need="serve")   # SettingsError -> one line from the CLI
    from bot.web.app import create_app

    logging.getLogger(__name__).info("starting on %s:%s", settings.host, settings.port)
    app = create_app(settings)
    print(f"fortnox-bot listening on http://{settings.host}:{settings.port} "
          f"({'Socket Mode' if settings.socket_mode else 'HTTP mode'})", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                proxy_headers=True)
    return 0
