"""Figure 5: one diagnosis, as a multiple of the sandbox's round-trip time (RTT).

A diagnosis cannot be faster than its sequential Fortnox calls: a healthy tenant with a valid token needs
/companyinformation, then the resource probes and /me side by side = 2 round trips; an expired access
token adds the refresh first = 3. The rest (store reads and writes, decryption, rules) should add little.

The diagnoses (and the RTT probe, so both are timed alike) run in a child process, `python -m bench.single`,
as the bot runs apart from Fortnox: the sandbox in this process would otherwise take turns with them for
Python's one interpreter lock and its work would be counted as the bot's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from bench.common import ROOT, Row, TempDatabase, bot_env, child_env, median, ms, open_store, seed_tenants, verdict
from bot import aio
from bot.runtime import build_runtime
from bot.sandbox.runner import SandboxServer
from bot.sandbox.world import World
from bot.settings import load_settings
from tests.support.seed import CLIENT_ID, CLIENT_SECRET

MARGIN = 1.10


@dataclass(frozen=True)
class Size:
    latency: float         # seconds the sandbox waits before each answer: Fortnox's RTT from the bot
    samples: int


FULL = Size(latency=0.05, samples=30)
QUICK = Size(latency=0.02, samples=3)


async def _rtt(api_url: str, samples: int) -> float:
    """Median time of a trivial GET (no token: the sandbox answers 401 after its latency)."""
    async with httpx.AsyncClient() as client:
        await client.get(f"{api_url}/companyinformation")
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            await client.get(f"{api_url}/companyinformation")
            times.append(time.perf_counter() - t0)
    return median(times)


async def _diagnoses(settings, groups: dict[str, list[str]]) -> dict[str, tuple[float, list[str]]]:
    rt = build_runtime(settings)
    try:
        out = {}
        for name, tenants in groups.items():
            await rt.diagnoser.run(tenants[0], trigger="bench")   # warm: connection, code paths
            times, causes = [], []
            for tenant in tenants[1:]:
                t0 = time.perf_counter()
                d = await rt.diagnoser.run(tenant, trigger="bench")
                times.append(time.perf_counter() - t0)
                causes.append(str(d.cause))
            out[name] = (median(times), causes)
        return out
    finally:
        await rt.aclose()
        rt.store.close()


def run(quick: bool = False) -> list[Row]:
    size = QUICK if quick else FULL
    world = World(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    world.rate_limit = None     # the RTT probe has no token: keep it out of the anonymous 25 / 5 s window
    with TempDatabase("sqlite") as db, SandboxServer(world) as sandbox:
        store = open_store(db.url)
        try:
            n = size.samples + 1
            healthy = seed_tenants(store, world, n, prefix="h")
            expired = seed_tenants(store, world, n, prefix="x", first_company=200_000, access_expires_in=60)
        finally:
            store.close()
        world.latency = size.latency
        env = bot_env(db_url=db.url, sandbox=sandbox)
        job = json.dumps({"api_url": sandbox.api_url, "samples": size.samples,
                          "groups": {"healthy": healthy, "expired": expired}})
        proc = subprocess.run([sys.executable, "-m", "bench.single"], cwd=ROOT, env=child_env(env), input=job,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"the diagnosing process failed:\n{proc.stderr[-2000:]}")
        measured = json.loads(proc.stdout)
        rtt, results = measured["rtt"], measured["results"]
    rows = []
    for name, calls, want in (("healthy", 2, "healthy"), ("expired", 3, "token_refreshed")):
        took, causes = results[name]
        ratio = took / rtt
        limit = calls * MARGIN
        right = all(c == want for c in causes)
        notes = []
        if ratio > limit:
            notes.append(f"{(ratio - limit) * rtt * 1000:.1f} ms over; {took - calls * rtt:.3f} s of each diagnosis "
                         "is the bot's own work (store, decryption, rules) rather than waiting for Fortnox")
        if not right:
            notes.append(f"expected every cause to be {want}, got {sorted(set(causes))}")
        label = "valid token" if name == "healthy" else "expired token (+ refresh)"
        rows.append(Row(f"5. Single diagnosis, {label}", f"<= {limit:.1f} RTT ({calls} sequential calls + 10 %)",
                        f"{ratio:.2f} RTT ({ms(took)}; RTT {ms(rtt)}, median of {size.samples})",
                        verdict(ratio <= limit and right), notes,
                        {"ratio": ratio, "took": took, "rtt": rtt, "calls": calls, "causes": causes}))
    return rows


def child() -> None:
    """In the child: read the job from standard input, print {"rtt", "results"} as JSON."""
    job = json.loads(sys.stdin.read())
    settings = load_settings(env=dict(os.environ), need="fortnox")

    async def go():
        return await _rtt(job["api_url"], job["samples"]), await _diagnoses(settings, job["groups"])

    rtt, results = aio.run(go())
    print(json.dumps({"rtt": rtt, "results": results}))


if __name__ == "__main__":
    child()
