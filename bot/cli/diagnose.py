"""`fortnox-bot diagnose TENANT|--all [--json]`."""
from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time
from collections import Counter

from bot.cli import EXIT_FAILED, EXIT_OK, UsageError, common, quiet_fortnox_logs
from bot.diagnosis import catalogue
from bot.diagnosis.model import APP_WIDE, TRANSIENT, Audience, Diagnosis, Status

MARKS = {Status.PASS: "✔", Status.FAIL: "✘", Status.WARN: "!", Status.SKIP: "–"}
ASCII_MARKS = {Status.PASS: "+", Status.FAIL: "x", Status.WARN: "!", Status.SKIP: "-"}
AUDIENCES = ((Audience.OPERATOR, "What the operator does"),
             (Audience.CUSTOMER_ADMIN, "What the customer's Fortnox system administrator does"))


def register(sub) -> None:
    p = sub.add_parser("diagnose", help="diagnose a tenant's Fortnox connection")
    p.add_argument("tenant", nargs="?")
    p.add_argument("--all", action="store_true", help="every tenant, concurrently within Fortnox's rate limits")
    p.add_argument("--json", action="store_true", help="JSON on standard output (one object a line with --all)")
    p.add_argument("--concurrency", type=int, default=50, help="tenants diagnosed at once with --all (default 50)")
    p.set_defaults(run=_run)


def _marks() -> dict[Status, str]:
    try:
        "✔✘–".encode(sys.stdout.encoding or "ascii")
        return MARKS
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 110))


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False) or [first]


def render_text(d: Diagnosis) -> str:
    """The diagnosis for a person at a terminal: the verdict first, then the evidence, then who does what."""
    width, marks = _width(), _marks()
    entry = catalogue.entry(d.cause)
    lines = [f"{d.tenant}: {d.cause} ({entry.title})", ""]
    lines += _wrap(d.summary, width, "  ", "  ")
    lines += ["", f"Checks ({sum(c.status == Status.FAIL for c in d.checks)} failing):"]
    id_width = min(max(len(c.id) for c in d.checks), 26)
    for c in d.checks:
        head = f"  {marks[c.status]} {c.id:<{id_width}}  "
        lines += _wrap(c.detail, width, head, " " * len(head))
    lines += ["", f"Who fixes it: {entry.who_fixes}"]
    if d.retry_after is not None and d.cause in TRANSIENT:
        lines.append(f"Look again in: {int(d.retry_after)} s")
    if d.affects_all_tenants:
        lines.append("Affects: every tenant of this integration, not only this one")
    if d.consent_can_fix:
        lines.append("A new consent by the customer fixes it: request a link from the Slack alert")
    for audience, title in AUDIENCES:
        steps = [s for s in d.steps if s.audience == audience]
        if steps:
            lines += ["", f"{title}:"]
            for i, s in enumerate(steps, 1):
                lines += _wrap(s.text, width, f"  {i}. ", "     ")
    if not d.steps:
        lines += ["", "Nothing to do."]
    if d.storage_fault:
        lines += ["", f"Storage fault: {d.storage_fault}"]
    return "\n".join(lines)


def _run(args) -> int:
    tenant = (args.tenant or "").strip()
    if args.all == bool(tenant):
        raise UsageError("give a TENANT or --all (not both)")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    quiet_fortnox_logs(args.verbose)
    if args.all:
        return common.with_runtime("store", lambda rt: _all(rt, args))
    return common.with_runtime("store", lambda rt: _one(rt, tenant, args))


async def _one(rt, tenant: str, args) -> int:
    from bot.aio import run_db

    # Like /fortnox in Slack: an id or a display name, any case, stray spaces ignored.
    found = await run_db(rt.store.tenants.find, tenant)
    d = await rt.diagnoser.run(found.id if found else tenant.strip(), trigger="cli")
    print(json.dumps(d.to_json(), ensure_ascii=False) if args.json else render_text(d), flush=True)
    return EXIT_OK


def _evidence(d: Diagnosis) -> str:
    """The check that decided the cause, as one line of the summary table."""
    check = next((c for c in d.checks if c.cause == d.cause and c.status in (Status.FAIL, Status.WARN)), None)
    if check is None:
        return "every check passes" if d.cause == "healthy" else "every check passes after a token refresh"
    return f"{check.id}: {check.detail}"


def _same_app_wide(causes: Counter) -> str | None:
    """The one app-wide cause every tenant shares, if so (a customer-by-customer fix would be wasted)."""
    if len(causes) == 1:
        cause = next(iter(causes))
        if cause in APP_WIDE and causes[cause] > 1:
            return cause
    return None


async def _all(rt, args) -> int:
    from bot.aio import run_db

    ids = sorted(t for t, _ in await run_db(rt.store.tenants.ids_and_names))
    if not ids:
        print("no tenants registered: fortnox-bot tenant add TENANT --kinds invoice,customer", file=sys.stderr)
        return EXIT_OK
    started = time.monotonic()
    causes: Counter[str] = Counter()
    rows: list[Diagnosis] = []
    failed: list[tuple[str, Exception]] = []
    async for tenant, result in rt.diagnoser.run_many(ids, concurrency=args.concurrency):
        if isinstance(result, Exception):
            failed.append((tenant, result))
            continue
        causes[str(result.cause)] += 1
        if args.json:
            print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
        else:
            rows.append(result)
    elapsed = time.monotonic() - started
    out = sys.stderr if args.json else sys.stdout   # with --json, stdout carries only the objects
    if not args.json:
        rows.sort(key=lambda d: d.tenant)
        width = max([len(d.tenant) for d in rows] + [6])
        print(f"{'TENANT':<{width}}  {'CAUSE':<26}  EVIDENCE")
        for d in rows:
            text = _evidence(d)
            room = max(30, _width() - width - 30)
            print(f"{d.tenant:<{width}}  {str(d.cause):<26}  {text if len(text) <= room else text[:room - 1] + '…'}")
        print()
    print(f"{len(ids)} tenants in {elapsed:.1f} s: " + ", ".join(f"{n} {c}" for c, n in causes.most_common()), file=out)
    for tenant, exc in failed:
        print(f"{tenant}: could not be diagnosed ({type(exc).__name__})", file=out)
    wide = _same_app_wide(causes) if not failed else None
    if wide:
        print(f"Every tenant fails the same way ({wide}): the cause is the integration's own setup or Fortnox "
              "itself, not each customer. Fix it once; do not send consent links.", file=out)
    return EXIT_FAILED if failed else EXIT_OK
