"""Figure 2: how many signed export events per second the bot accepts, on SQLite and PostgreSQL.

The bot runs in its own process (peak RSS is its own). Events are signed before the clock starts. The
diagnoses they trigger run in the background meanwhile, as in production; the backlog's drain time is
reported on its own.
"""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlmodel import func, select

from bench.common import (BotProcess, Row, TempDatabase, bot_env, cpu_seconds_self, open_store, percentile,
                          seed_tenants, verdict, wait_for_jobs, where_time_went)
from bench.load import fire
from bot.sandbox.runner import SandboxServer
from bot.sandbox.world import World
from bot.slack_standin.runner import SlackStandin
from storage.models import ExportEvent
from tests.support.seed import CLIENT_ID, CLIENT_SECRET, export_event, signed_webhook

TARGET_RATE = 1000.0     # accepted events per second on PostgreSQL
TARGET_RSS_MB = 200.0


@dataclass(frozen=True)
class Size:
    events: int
    tenants: int
    concurrency: int
    budget: float          # seconds the sender may run
    drain: float           # seconds to wait for the diagnoses' backlog


FULL = Size(events=10_000, tenants=2_000, concurrency=64, budget=30.0, drain=20.0)
QUICK = Size(events=100, tenants=20, concurrency=8, budget=20.0, drain=20.0)


def signed_events(size: Size, tenants: list[str]) -> list[tuple[bytes, dict]]:
    """Round-robin over tenants, so every tenant's incident is opened early and then updated."""
    occurred = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for i in range(size.events):
        event = export_event(tenants[i % len(tenants)], event_id=f"evt_bench_{i:06d}", ref=f"INV-{i}",
                             occurred_at=occurred)
        out.append(signed_webhook(event))
    return out


def _stored_events(store) -> int:
    with store.db.session() as s:
        return s.exec(select(func.count()).select_from(ExportEvent)).one()


def _check(store, accepted: int) -> dict:
    incidents = store.incidents.all()
    live = Counter(i.tenant_id for i in incidents if i.open_key is not None and not i.platform)
    total = Counter(i.tenant_id for i in incidents if not i.platform)
    return {"incidents": len(incidents), "max_live_per_tenant": max(live.values(), default=0),
            "max_incidents_per_tenant": max(total.values(), default=0), "accepted": accepted}


# (store, jobs in a process of their own?, whether the 1,000/s target applies). The targeted setup runs first:
# right after another 10,000-event run PostgreSQL is still busy with it (checkpoint, vacuum) for a while.
SETUPS = (("postgres", True, True), ("sqlite", False, False), ("postgres", False, False))


def _setup_name(kind: str, apart: bool) -> str:
    name = "SQLite" if kind == "sqlite" else "PostgreSQL"
    return f"{name}, serve + worker processes" if apart else f"{name}, one process"


def measure(kind: str, size: Size, *, jobs_apart: bool = False) -> dict:
    world = World(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with TempDatabase(kind) as db, SandboxServer(world) as sandbox, SlackStandin("xoxb-test") as slack:
        store = open_store(db.url)
        try:
            tenants = seed_tenants(store, world, size.tenants)
            requests = signed_events(size, tenants)
            with BotProcess(bot_env(db_url=db.url, sandbox=sandbox, slack=slack), jobs_apart=jobs_apart) as bot:
                cpu, web_cpu, own = bot.cpu_seconds(), bot.server_cpu_seconds(), cpu_seconds_self()
                out = asyncio.run(fire(bot.url + "/webhooks/export-failure", requests, concurrency=size.concurrency,
                                       budget=size.budget, keep_bodies=True))
                cpu, web_cpu = bot.cpu_seconds() - cpu, bot.server_cpu_seconds() - web_cpu
                own = cpu_seconds_self() - own
                rss_ingest = bot.peak_rss_mb()
                drained = wait_for_jobs(store, size.drain)
                rss, worker_rss = bot.peak_rss_mb(), bot.worker_peak_rss_mb()
            accepted = sum(1 for status, body in out.answers
                           if status == 202 and json.loads(body).get("duplicate") is False)
            result = {"kind": kind, "jobs_apart": jobs_apart, "rate": accepted / out.wall, "wall": out.wall,
                      "bot_cpu": cpu, "web_cpu": web_cpu, "bench_cpu": own, "rss_ingest_mb": rss_ingest, "rss_mb": rss,
                      "worker_rss_mb": worker_rss, "drain": drained, "statuses": out.statuses,
                      "failures": out.failures, "errors": out.errors, "not_sent": out.not_sent, "events": size.events,
                      "stored": _stored_events(store), "p99_ms": percentile(out.latencies, 99) * 1000,
                      "slack_posts": len(slack.calls_to("chat.postMessage"))}
            result.update(_check(store, accepted))
            return result
        finally:
            store.close()


def _rows(r: dict, size: Size, *, targeted: bool) -> list[Row]:
    name = _setup_name(r["kind"], r["jobs_apart"])
    drain = f"{r['drain']:.0f} s" if r["drain"] is not None else f"not within {size.drain:.0f} s"
    all_ok = r["accepted"] == size.events == r["stored"]
    rate_ok = r["rate"] >= TARGET_RATE if targeted else True
    per_event = r["bot_cpu"] / max(r["accepted"], 1) * 1000
    web_per_event = r["web_cpu"] / max(r["accepted"], 1) * 1000
    notes = []
    if not all_ok:
        notes.append(f"{r['accepted']} of {size.events} events accepted, {r['stored']} stored: {r['statuses']}, "
                     f"{r['failures']} without answer {r['errors']}, {r['not_sent']} not sent")
    if not rate_ok:
        notes.append(
            f"{TARGET_RATE - r['rate']:.0f} events/s short: the server spent {web_per_event:.2f} ms of CPU per event "
            f"and the bot {per_event:.1f} ms in all (the diagnoses the events triggered included); "
            f"{where_time_went(r['bot_cpu'], r['wall'])}.")
    target = f">= {TARGET_RATE:.0f} events/s" if targeted else "(reported)"
    where = ("the server (HTTP + group-committed ingest) and `fortnox-bot worker` (the diagnoses) in two processes"
             if r["jobs_apart"] else "one process: HTTP, ingest and the diagnoses it triggers share a CPU")
    rate = Row(f"2. Webhook ingest, {name}", target,
               f"{r['rate']:,.0f} events/s ({r['accepted']:,}/{size.events:,} accepted)",
               verdict(rate_ok and all_ok), notes, r,
               detail=f"{r['wall']:.1f} s over {size.concurrency} connections, p99 answer {r['p99_ms']:.0f} ms; {where}; "
                      f"server CPU {r['web_cpu']:.1f} s ({web_per_event:.2f} ms per event), bot CPU in all "
                      f"{r['bot_cpu']:.1f} s ({per_event:.1f} ms per event); bench process (load generator, sandbox) "
                      f"{r['bench_cpu']:.1f} s; the diagnoses' backlog drained {drain} after the last event")
    dup_ok = r["max_live_per_tenant"] <= 1 and r["max_incidents_per_tenant"] <= 1
    dups = Row(f"2. No duplicate incident, {name}", "<= 1 live incident per tenant",
               f"{r['incidents']} incidents for {size.tenants} tenants; at most {r['max_live_per_tenant']} live "
               f"and {r['max_incidents_per_tenant']} in all per tenant", verdict(dup_ok), [], {})
    peak = max(r["rss_mb"], r["worker_rss_mb"] or 0)
    rss_ok = peak < TARGET_RSS_MB
    measured = f"{r['rss_mb']:.0f} MB (VmHWM; {r['rss_ingest_mb']:.0f} MB at the end of ingest)"
    if r["worker_rss_mb"] is not None:
        measured = f"server {r['rss_mb']:.0f} MB, worker {r['worker_rss_mb']:.0f} MB (VmHWM of each)"
    rss = Row(f"2. Peak RSS of the bot, {name}", f"< {TARGET_RSS_MB:.0f} MB", measured, verdict(rss_ok),
              [] if rss_ok else [f"{peak - TARGET_RSS_MB:.0f} MB over"], {})
    return [rate, dups, rss]


def run(quick: bool = False) -> list[Row]:
    size = QUICK if quick else FULL
    rows = []
    for kind, apart, targeted in SETUPS:
        reason = TempDatabase.unavailable(kind)
        if reason:
            rows.append(Row(f"2. Webhook ingest, {_setup_name(kind, apart)}", "-", f"skipped: {reason}", "skip"))
            continue
        rows += _rows(measure(kind, size, jobs_apart=apart), size, targeted=targeted)
    return rows
