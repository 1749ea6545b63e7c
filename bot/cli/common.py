"""Shared helpers of the CLI commands."""
from __future__ import annotations

import asyncio

from bot.runtime import build_runtime, open_store
from bot.settings import Settings, load_settings


def settings(need: str = "store") -> Settings:
    return load_settings(need=need)


def store(need: str = "store", upgrade: bool = True):
    s = settings(need)
    return s, open_store(s, upgrade=upgrade)


def with_runtime(need: str, fn):
    """Run `await fn(runtime)` with a runtime whose store is migrated."""
    s, st = store(need)

    async def go():
        rt = build_runtime(s, st)
        try:
            return await fn(rt)
        finally:
            await rt.aclose()

    return asyncio.run(go())
