"""Figure 3: a storm of failures with one app-wide cause must stay one quiet Slack message.

Every tenant's access token has expired and the bot runs with a wrong FORTNOX_CLIENT_SECRET, so each
diagnosis ends in `client_credentials_invalid` (it affects every tenant). The Slack stand-in enforces
Slack's ~1 message per second per channel, so a bot that posts per tenant meets real 429s.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, or_
from sqlmodel import func, select

from bench.common import BotProcess, Row, TempDatabase, bot_env, open_store, seed_tenants, verdict, wait_for_jobs
from bench.load import fire
from bot.sandbox.runner import SandboxServer
from bot.sandbox.world import World
from bot.slack_standin.runner import SlackStandin
from storage.models import Job
from tests.support.seed import CLIENT_ID, CLIENT_SECRET, export_event, signed_webhook

TARGET_MESSAGES = 5


@dataclass(frozen=True)
class Size:
    events: int
    tenants: int
    window: float          # the storm's events arrive evenly over this many seconds
    concurrency: int
    drain: float           # seconds to wait for diagnoses and Slack deliveries afterwards


FULL = Size(events=10_000, tenants=2_000, window=60.0, concurrency=32, drain=45.0)
QUICK = Size(events=20, tenants=20, window=0.5, concurrency=8, drain=30.0)


def _requests(size: Size, tenants: list[str]) -> list[tuple[bytes, dict]]:
    # signed just before the storm: Standard Webhooks accepts timestamps within 300 s
    occurred = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [signed_webhook(export_event(tenants[i % len(tenants)], event_id=f"evt_storm_{i:06d}", ref=f"INV-{i}",
                                        occurred_at=occurred)) for i in range(size.events)]


def _unshown(store) -> int:
    """Tenants whose live incident shows in no posted message: neither its own nor the platform one it joined."""
    incidents = {i.id: i for i in store.incidents.all()}
    unshown = 0
    for inc in incidents.values():
        if inc.platform or inc.open_key is None:
            continue
        parent = incidents.get(inc.parent_id) if inc.parent_id else None
        if not (inc.message_ts or (parent is not None and parent.message_ts)):
            unshown += 1
    return unshown


def _slack_jobs_stuck(store) -> int:
    """Slack deliveries that failed, or wait after a refusal (429 or other): work Slack did not take."""
    with store.db.session() as s:
        return s.exec(select(func.count()).select_from(Job).where(
            Job.kind.startswith("slack."),
            or_(Job.status == "failed", and_(Job.status != "done", Job.last_error.is_not(None))))).one()


def run(quick: bool = False) -> list[Row]:
    size = QUICK if quick else FULL
    world = World(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with TempDatabase("sqlite") as db, SandboxServer(world) as sandbox, SlackStandin("xoxb-test") as slack:
        store = open_store(db.url)
        try:
            tenants = seed_tenants(store, world, size.tenants, access_expires_in=30)
            slack.state.post_rate_limit = (1, 1.0)     # Slack: about one message per second per channel
            env = bot_env(db_url=db.url, sandbox=sandbox, slack=slack, FORTNOX_CLIENT_SECRET="not-the-secret")
            with BotProcess(env) as bot:
                requests = _requests(size, tenants)
                out = asyncio.run(fire(bot.url + "/webhooks/export-failure", requests, concurrency=size.concurrency,
                                       budget=size.window + 15, pace=size.events / size.window))
                drained = wait_for_jobs(store, size.drain)
            lost, unhandled = _unshown(store), _slack_jobs_stuck(store)
            platform = [i for i in store.incidents.all() if i.platform]
        finally:
            store.close()
        calls = slack.calls
    posts = [c for c in calls if c.method == "chat.postMessage"]
    updates = [c for c in calls if c.method == "chat.update"]
    throttled = [c for c in calls if c.status == 429]
    messages = len(slack.messages)
    accepted = out.statuses.get(202, 0)
    data = {"events": size.events, "accepted": accepted, "wall": out.wall, "posts": len(posts),
            "updates": len(updates), "messages": messages, "throttled": len(throttled), "lost": lost,
            "undelivered": unhandled, "drain": drained,
            "platform_causes": sorted(i.cause for i in platform)}
    cause = ", ".join(data["platform_causes"]) or "none"
    drain = f"{drained:.0f} s" if drained is not None else f"not within {size.drain:.0f} s"
    ratio = f"{accepted / messages:,.0f}x fewer than one per failure" if messages else "no message at all"
    notes = []
    if messages > TARGET_MESSAGES:
        notes.append(f"{messages - TARGET_MESSAGES} messages over; platform incidents: {cause}")
    if accepted != size.events:
        notes.append(f"the storm was smaller than asked: {accepted:,} of {size.events:,} failures were accepted within "
                     f"{size.window + 15:.0f} s ({out.statuses}, {out.not_sent:,} not sent, {out.failures} without "
                     f"answer): the bot accepted {accepted / out.wall:.0f}/s, below the storm's "
                     f"{size.events / size.window:.0f}/s "
                     "(see figure 2)")
    if not platform:
        notes.append("no platform incident was opened: the app-wide cause was not recognised")
    return [
        Row("3. Storm: messages posted", f"<= {TARGET_MESSAGES} for {size.events:,} failures",
            f"{messages} ({ratio}); {len(posts)} chat.postMessage, {len(updates)} chat.update",
            verdict(messages <= TARGET_MESSAGES and accepted == size.events and bool(platform)), notes, data,
            detail=f"{accepted:,} of {size.events:,} failures from {size.tenants:,} tenants accepted in "
                   f"{out.wall:.0f} s; jobs drained {drain} later; platform incident: {cause}"),
        # An unshown tenant counts as lost only once every job is done; before, it may still be queued.
        Row("3. Storm: alerts lost", "0", f"{lost} of {size.tenants:,} tenants" if lost == 0 or drained is not None
            else f"unknown: {lost} of {size.tenants:,} tenants not shown yet, their jobs still queued",
            verdict(lost == 0),
            [] if lost == 0 else [f"{lost} tenants' live incidents show in no posted message"
                                  + ("" if drained is not None else f" after waiting {size.drain:.0f} s for the jobs")],
            {}),
        Row("3. Storm: 429s left unhandled", "0",
            f"{unhandled} Slack jobs failed or waiting after a refusal; {len(throttled)} calls were answered 429",
            verdict(unhandled == 0), [], {}),
    ]
