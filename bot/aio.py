"""Run blocking store calls off the event loop (the store is synchronous SQLAlchemy)."""
from __future__ import annotations

import asyncio
from functools import partial
from typing import Callable, TypeVar

T = TypeVar("T")


async def run_db(fn: Callable[..., T], *args, **kwargs) -> T:
    return await asyncio.to_thread(partial(fn, *args, **kwargs))
