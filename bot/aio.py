"""Event loops, and blocking store calls run off them (the store is synchronous SQLAlchemy)."""
from __future__ import annotations

import asyncio
from functools import partial
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (not on Windows): the same asyncio API at a fraction of the CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Awaitable[T]) -> T:
    """asyncio.run on the loop above."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


async def run_db(fn: Callable[..., T], *args, **kwargs) -> T:
    return await asyncio.to_thread(partial(fn, *args, **kwargs))
