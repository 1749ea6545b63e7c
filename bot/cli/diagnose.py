"""`fortnox-bot diagnose TENANT|--all [--json]`."""
from __future__ import annotations

import json
import sys
import time
from collections import Counter

from bot.cli import UsageError, common
from bot.diagnosis.model import Audience, Diagnosis, Status

MARKS = {Status.PASS: "✔", Status.FAIL: "✘", Status.WARN: "!", Status.SKIP: "–"}


def register(sub) -> None:
    p = sub.add_parser("diagnose", help="diagnose a tenant's Fortnox connection")
    p.add_argument("tenant", nargs="?")
    p.add_argument("--all", action="store_true", help="every tenant, concurrently within Fortnox's rate limits")
    p.add_argument("--json", action="store_true", help="JSON on standard output (one object a line with --all)")
    p.add_argument("--concurrency", type=int, default=200, help="tenants diagnosed at once with --all (default 200)")
    p.set_defaults(run=_run)


def render_text(d: Diagnosis) -> str:
    lines = [f"Tenant:  {d.tenant}", f"Cause:   {d.cause}", f"Summary: {d.summary}", "", "Checks:"]
    for c in d.checks:
        lines.append(f"  {MARKS[c.status]} {c.status.value:<4} {c.id:<22} {c.detail}")
    for audience, title in ((Audience.OPERATOR, "Steps for the operator"),
                            (Audience.CUSTOMER_ADMIN, "Steps for the customer's Fortnox system administrator")):
        steps = [s for s in d.steps if s.audience == audience]
        if steps:
            lines += ["", f"{title}:"]
            lines += [f"  {i}. {s.text}" for i, s in enumerate(steps, 1)]
    if not d.steps:
        lines += ["", "No action needed."]
    if d.storage_fault:
        lines += ["", f"Storage fault: {d.storage_fault}"]
    return "\n".join(lines)


def _run(args) -> int:
    if args.all == bool(args.tenant):
        raise UsageError("give a TENANT or --all (not both)")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.all:
        return common.with_runtime("fortnox", lambda rt: _all(rt, args))
    return common.with_runtime("fortnox", lambda rt: _one(rt, args))


async def _one(rt, args) -> int:
    d = await rt.diagnoser.run(args.tenant.strip(), trigger="cli")
    print(json.dumps(d.to_json(), ensure_ascii=False) if args.json else render_text(d))
    return 1 if d.storage_fault else 0


async def _all(rt, args) -> int:
    from bot.aio import run_db

    ids = [t for t, _ in await run_db(rt.store.tenants.ids_and_names)]
    started = time.monotonic()
    causes: Counter[str] = Counter()
    rows = []
    async for d in rt.diagnoser.run_many(ids, concurrency=args.concurrency):
        causes[str(d.cause)] += 1
        if args.json:
            print(json.dumps(d.to_json(), ensure_ascii=False), flush=False)
        else:
            rows.append(d)
    elapsed = time.monotonic() - started
    if args.json:
        sys.stdout.flush()
        print(f"diagnosed {len(ids)} tenants in {elapsed:.1f} s", file=sys.stderr)
        return 0
    rows.sort(key=lambda d: d.tenant)
    width = max([len(d.tenant) for d in rows] + [6])
    print(f"{'TENANT':<{width}}  {'CAUSE':<26}  SUMMARY")
    for d in rows:
        print(f"{d.tenant:<{width}}  {str(d.cause):<26}  {d.summary[:100]}")
    print()
    print(f"{len(ids)} tenants in {elapsed:.1f} s: " + ", ".join(f"{n} {c}" for c, n in causes.most_common()))
    wide = [c for c in causes if c in ("client_credentials_invalid", "fortnox_unavailable", "rate_limited")]
    if wide and sum(causes[c] for c in wide) == len(ids) and len(ids) > 1:
        print("Every tenant fails the same way: suspect the integration's client credentials or Fortnox itself, "
              "not each customer.")
    return 0
