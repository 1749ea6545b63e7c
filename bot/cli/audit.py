"""`fortnox-bot audit TENANT`: the audit trail of one tenant."""
from __future__ import annotations

import json

from bot.cli import UsageError, common


def register(sub) -> None:
    p = sub.add_parser("audit", help="print a tenant's audit log")
    p.add_argument("tenant")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_run)


def _run(args) -> int:
    _, st = common.store()
    if not args.tenant.strip():
        raise UsageError("give a tenant")
    rows = st.audit.for_tenant(args.tenant.strip())
    if args.json:
        print(json.dumps([{"at": r.at.isoformat(), "action": r.action, "actor": r.actor, "incident": r.incident_id,
                           "request": r.request_id, "detail": r.detail, "permalink": r.permalink} for r in rows],
                         ensure_ascii=False))
        return 0
    if not rows:
        print(f"no audit entries for {args.tenant}")
    for r in rows:
        extra = " ".join(f"{k}={v}" for k, v in sorted(r.detail.items()))
        link = f" {r.permalink}" if r.permalink else ""
        print(f"{r.at:%Y-%m-%d %H:%M:%S}Z  {r.action:<18} {r.actor:<14} {r.incident_id or '':<14} {extra}{link}")
    return 0
