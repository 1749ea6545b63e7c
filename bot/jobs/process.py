"""`fortnox-bot worker`: the job worker (and daily maintenance) in a process of its own, without HTTP.

For deployments where `serve` processes answer webhooks and Slack only (FORTNOX_BOT_RUN_JOBS=false):
their acknowledgements then never wait for a CPU busy with diagnoses. Jobs live in the store, so any
number of workers share them (docs/replicas.md); a new job is picked up within the worker's poll interval.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys

from bot import aio
from bot.settings import load_settings
from storage.db import safe_url

log = logging.getLogger(__name__)


async def _work(settings) -> None:
    from bot.services import Bot

    bot = Bot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await bot.start()
    store = safe_url(settings.database_url)
    print(f"fortnox-bot worker running ({bot.worker.concurrency} jobs at a time, jobs from {store}); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    if not bot.store.db.is_postgres:
        print("fortnox-bot worker: note: on SQLite the worker and `serve` take turns for one database file; "
              "for separate worker processes use PostgreSQL (docs/replicas.md)", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await bot.stop()
        bot.store.close()


def run_worker() -> int:
    settings = load_settings(need="worker")   # SettingsError -> one line from the CLI
    aio.run(_work(dataclasses.replace(settings, run_jobs=True)))   # the env may say false for its web processes
    return 0
