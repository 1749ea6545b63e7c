"""A bounded load generator: send prepared requests, N at a time, and time each answer."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)   # seconds, one per answered request
    statuses: dict[int, int] = field(default_factory=dict)
    answers: list[tuple[int, bytes]] = field(default_factory=list)   # (status, body), kept only when asked for
    failures: int = 0                                      # no answer (timeout, connection error)
    errors: dict[str, int] = field(default_factory=dict)   # exception name -> count, for those
    not_sent: int = 0                                      # left over when the time budget ran out
    wall: float = 0.0                                      # first send to last answer

    @property
    def answered(self) -> int:
        return len(self.latencies)


async def fire(url: str, requests: list[tuple[bytes, dict]], *, concurrency: int, budget: float,
               keep_bodies: bool = False, pace: float | None = None, timeout: float = 30.0) -> Outcome:
    """POST each (body, headers) to `url` with `concurrency` tasks; stop starting new ones after `budget` s.

    pace: at most this many requests per second in total (a storm spread over time), None = as fast as answered.
    """
    out = Outcome()
    queue = iter(enumerate(requests))
    # One client of one connection per task, like `concurrency` separate senders: a single shared pool
    # costs httpcore CPU per request in proportion to its size (see bot/fortnox/transport.py).
    ssl = httpx.create_ssl_context()
    clients = [httpx.AsyncClient(verify=ssl, timeout=timeout, limits=httpx.Limits(max_connections=1))
               for _ in range(concurrency)]
    started = time.perf_counter()
    deadline = started + budget

    async def worker(client: httpx.AsyncClient) -> None:
        for index, (body, headers) in queue:
            now = time.perf_counter()
            if now > deadline:
                out.not_sent += 1
                continue
            if pace:
                due = started + index / pace
                if due > now:
                    await asyncio.sleep(due - now)
            t0 = time.perf_counter()
            try:
                resp = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                out.failures += 1
                out.errors[type(exc).__name__] = out.errors.get(type(exc).__name__, 0) + 1
                continue
            out.latencies.append(time.perf_counter() - t0)
            out.statuses[resp.status_code] = out.statuses.get(resp.status_code, 0) + 1
            if keep_bodies:
                out.answers.append((resp.status_code, resp.content))

    try:
        await asyncio.gather(*(worker(client) for client in clients))
        out.wall = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    return out
