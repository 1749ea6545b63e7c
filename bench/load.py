"""A bounded load generator: send prepared requests, N at a time, and time each answer.

It speaks plain HTTP/1.1 over keep-alive loopback connections itself instead of using httpx: the
generator shares a 2-CPU machine with the bot under test, and httpx spent about 2 ms of CPU per
request, which at 1,000 requests/s is a whole CPU taken from the bot. This client spends tens of
microseconds (requests are serialised before the clock starts; answers are parsed only as far as the
status line, Content-Length and, when asked for, the body). And it runs in a process of its own: in the
bench process it would take turns for Python's interpreter lock with the sandbox and the Slack stand-in,
and a wait for that lock would be counted as the bot's latency.
"""
from __future__ import annotations

import asyncio
import pickle
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


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


def serialise(url: str, body: bytes, headers: dict) -> bytes:
    """One POST request as bytes on the wire (keep-alive)."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
             f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, keep = 0, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
        elif name == b"transfer-encoding":
            raise ValueError("chunked answers are not expected from the bot")
    body = await reader.readexactly(length) if length else b""
    return status, body, keep


async def fire(url: str, requests: list[tuple[bytes, dict]], *, concurrency: int, budget: float,
               keep_bodies: bool = False, pace: float | None = None, timeout: float = 30.0) -> Outcome:
    """POST each (body, headers) to `url` with `concurrency` connections; stop starting new ones after `budget` s.

    pace: at most this many requests per second in total (a storm spread over time), None = as fast as answered.
    Runs `_fire` in a child process (`python -m bench.load`) and returns its Outcome.
    """
    job = pickle.dumps((url, requests, dict(concurrency=concurrency, budget=budget, keep_bodies=keep_bodies,
                                            pace=pace, timeout=timeout)))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.load", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(job)
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed (exit {proc.returncode})")
    return pickle.loads(out)


async def _fire(url: str, requests: list[tuple[bytes, dict]], *, concurrency: int, budget: float,
                keep_bodies: bool, pace: float | None, timeout: float) -> Outcome:
    out = Outcome()
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    wire = [serialise(url, body, headers) for body, headers in requests]
    queue = iter(enumerate(wire))
    started = time.perf_counter()
    deadline = started + budget

    def failed(exc: BaseException) -> None:
        out.failures += 1
        out.errors[type(exc).__name__] = out.errors.get(type(exc).__name__, 0) + 1

    async def worker() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            for index, data in queue:
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
                    if conn is None:
                        conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                    reader, writer = conn
                    writer.write(data)
                    status, body, keep = await asyncio.wait_for(_read_answer(reader), timeout)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    failed(exc)
                    if conn is not None:
                        conn[1].close()
                    conn = None
                    continue
                out.latencies.append(time.perf_counter() - t0)
                out.statuses[status] = out.statuses.get(status, 0) + 1
                if keep_bodies:
                    out.answers.append((status, body))
                if not keep:
                    conn[1].close()
                    conn = None
        finally:
            if conn is not None:
                conn[1].close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    out.wall = time.perf_counter() - started
    return out


if __name__ == "__main__":
    from bench import load   # this module under its importable name, so the Outcome unpickles in the parent
    from bot import aio

    _url, _requests, _options = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(aio.run(load._fire(_url, _requests, **_options))))
