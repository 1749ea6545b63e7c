"""Shared helpers of the CLI commands."""
from __future__ import annotations

from bot import aio
from bot.runtime import build_runtime, open_store
from bot.settings import Settings, SettingsError, load_settings


def settings(need: str = "store", also: tuple[str, ...] = ()) -> Settings:
    """Settings for a command; `also` names further settings it cannot run without (one clear line each)."""
    s = load_settings(need=need)
    for name in also:
        if not getattr(s, name.lower()):
            raise SettingsError(name, "is required but not set")
    return s


def store(need: str = "store", upgrade: bool = True, also: tuple[str, ...] = ()):
    s = settings(need, also)
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

    try:
        return aio.run(go())
    finally:
        st.close()
