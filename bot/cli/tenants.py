"""`fortnox-bot tenant add|set|list|import|credentials` and `fortnox-bot connect`."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from bot import tenants as rules
from bot.cli import UsageError, common
from bot.fortnox.claims import decode_claims
from storage.models import Tenant
from storage.tenants import TenantExists, TenantNotFound


def register(sub) -> None:
    t = sub.add_parser("tenant", help="register and list tenants")
    tsub = t.add_subparsers(dest="tenant_command", metavar="ACTION")
    tsub.required = True
    for name, fn, helptext in (("add", _add, "register a tenant"), ("set", _set, "change a tenant")):
        p = tsub.add_parser(name, help=helptext)
        p.add_argument("tenant")
        p.add_argument("--name")
        p.add_argument("--channel", help="Slack channel ID for this tenant's alerts (default: ALERT_CHANNEL)")
        p.add_argument("--kinds", help="export kinds, comma-separated, e.g. invoice,customer")
        p.add_argument("--service-account", action=argparse.BooleanOptionalAction, default=None,
                       help="consent links create a Fortnox service account (approved by a system administrator)")
        p.add_argument("--company-id", help="the tenant's Fortnox company id (DatabaseNumber), if known")
        p.set_defaults(run=fn)
    p = tsub.add_parser("list", help="list tenants")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_list)
    p = tsub.add_parser("import", help="import tenants from CSV or JSON")
    p.add_argument("file")
    p.set_defaults(run=_import)
    p = tsub.add_parser("credentials", help="store existing credentials read as JSON from standard input")
    p.add_argument("tenant")
    p.set_defaults(run=_credentials)
    c = sub.add_parser("connect", help="print a consent link for a tenant's first connection")
    c.add_argument("tenant")
    c.set_defaults(run=_connect)


def _spec(args):
    try:
        return rules.spec(args.tenant, args.name, args.channel, args.kinds)
    except rules.TenantInputError as exc:
        raise UsageError(str(exc)) from None


def _add(args) -> int:
    spec = _spec(args)
    _, st = common.store()
    try:
        st.tenants.add(Tenant(id=spec.tenant, name=spec.name, channel=spec.channel, kinds=list(spec.kinds),
                              service_account=bool(args.service_account), company_id=args.company_id))
    except TenantExists:
        raise UsageError(f"tenant {spec.tenant!r} already exists; use `fortnox-bot tenant set`") from None
    print(f"added tenant {spec.tenant} ({spec.name}); kinds: {', '.join(spec.kinds) or 'none'}; "
          f"alerts to {spec.channel or 'ALERT_CHANNEL'}")
    return 0


def _set(args) -> int:
    try:
        tid = rules.check_id(args.tenant)
        changes = {}
        if args.name is not None:
            changes["name"] = args.name.strip() or tid
        if args.channel is not None:
            changes["channel"] = rules.check_channel(args.channel)
        if args.kinds is not None:
            changes["kinds"] = list(rules.parse_kinds(args.kinds))
    except rules.TenantInputError as exc:
        raise UsageError(str(exc)) from None
    if args.service_account is not None:
        changes["service_account"] = bool(args.service_account)
    if args.company_id is not None:
        changes["company_id"] = args.company_id.strip() or None
    if not changes:
        raise UsageError("nothing to change: give --name, --channel, --kinds, --service-account or --company-id")
    _, st = common.store()
    try:
        st.tenants.update(tid, **changes)
    except TenantNotFound:
        raise UsageError(f"tenant {tid!r} is not registered") from None
    print(f"updated tenant {tid}: {', '.join(sorted(changes))}")
    return 0


def _list(args) -> int:
    _, st = common.store()
    rows = st.tenants.list()
    modes = st.tenants.connection_modes()
    items = [{"tenant": t.id, "name": t.name, "channel": t.channel, "kinds": list(t.kinds),
              "connection": modes.get(t.id, "none"), "service_account": t.service_account, "company_id": t.company_id}
             for t in rows]
    if args.json:
        print(json.dumps(items, ensure_ascii=False))
        return 0
    if not items:
        print("no tenants yet: fortnox-bot tenant add TENANT --name NAME --kinds invoice,customer")
        return 0
    widths = [max(len(str(i[k] or "-")) for i in items + [{"tenant": "TENANT", "name": "NAME", "channel": "CHANNEL",
                                                            "connection": "CONNECTION"}])
              for k in ("tenant", "name", "channel", "connection")]
    print(f"{'TENANT':<{widths[0]}}  {'NAME':<{widths[1]}}  {'CHANNEL':<{widths[2]}}  {'CONNECTION':<{widths[3]}}  KINDS")
    for i in items:
        print(f"{i['tenant']:<{widths[0]}}  {i['name']:<{widths[1]}}  {(i['channel'] or '-'):<{widths[2]}}  "
              f"{i['connection']:<{widths[3]}}  {' '.join(i['kinds'])}")
    return 0


def _import(args) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {args.file}: {exc.__class__.__name__}") from None
    try:
        specs = rules.parse_import(text, path.name)
    except rules.TenantInputError as exc:
        raise UsageError(f"{args.file}: {exc}; nothing was imported") from None
    _, st = common.store()
    added, updated = st.tenants.upsert_many([Tenant(id=s.tenant, name=s.name, channel=s.channel, kinds=list(s.kinds))
                                             for s in specs])
    print(f"imported {len(specs)} tenants from {args.file}: {added} added, {updated} updated")
    return 0


def _parse_expiry(value, access_token: str) -> datetime:
    if value is None:
        claims = decode_claims(access_token)
        if claims is None or claims.exp is None:
            raise UsageError("expires_at is required when the access token is not a Fortnox JWT")
        return claims.exp
    if isinstance(value, bool):
        raise UsageError("expires_at must be ISO 8601 with an offset or epoch seconds")
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise UsageError("expires_at is out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():   # epoch seconds sent as a string
            return _parse_expiry(int(text), access_token)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise UsageError(f"expires_at {value!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            raise UsageError("expires_at needs a UTC offset, e.g. 2026-12-03T15:00:00+01:00")
        return parsed.astimezone(timezone.utc)
    raise UsageError("expires_at must be ISO 8601 with an offset or epoch seconds")


# The token endpoint's own answer (expires_in, scope, token_type) can be piped in as it is; those keys are ignored.
_OAUTH_KEYS = {"access_token", "refresh_token", "expires_at", "expires_in", "scope", "token_type"}
_SHAPES = '{"access_token", "refresh_token", "expires_at"?} or {"legacy_access_token"}'


def _read_credentials() -> dict:
    """The JSON object on standard input, validated before anything is stored."""
    if sys.stdin is None or sys.stdin.isatty():
        print("paste the JSON, then Ctrl-D:", file=sys.stderr)
    raw = sys.stdin.read() if sys.stdin is not None else ""
    if not raw.strip():
        raise UsageError(f"nothing on standard input: pipe in {_SHAPES}; nothing was stored")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"standard input is not JSON ({exc.msg}); nothing was stored") from None
    if not isinstance(data, dict):
        raise UsageError(f"expected a JSON object: {_SHAPES}; nothing was stored")
    allowed = {"legacy_access_token"} if "legacy_access_token" in data else _OAUTH_KEYS
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UsageError(f"unexpected key(s) {', '.join(map(repr, unknown))}: expected {_SHAPES}; nothing was stored")
    return data


def _credentials(args) -> int:
    try:
        tid = rules.check_id(args.tenant)
    except rules.TenantInputError as exc:
        raise UsageError(str(exc)) from None
    data = _read_credentials()
    _, st = common.store()
    tenant = st.tenants.get(tid)
    if tenant is None:
        raise UsageError(f"tenant {tid!r} is not registered: fortnox-bot tenant add {tid} --kinds ...")
    if "legacy_access_token" in data:
        legacy = data["legacy_access_token"]
        if not isinstance(legacy, str) or not legacy.strip():
            raise UsageError("legacy_access_token must be a non-empty string; nothing was stored")
        st.connections.store_legacy(tid, legacy.strip())
        st.audit.record("credentials_stored", actor="cli", tenant_id=tid, detail={"kind": "legacy"})
        print(f"stored a legacy credential for {tid} (encrypted); run `fortnox-bot diagnose {tid}` for the "
              "migration steps")
        return 0
    access, refresh = data.get("access_token"), data.get("refresh_token")
    if not isinstance(access, str) or not access.strip():
        raise UsageError("access_token must be a non-empty string; nothing was stored")
    if refresh is not None and (not isinstance(refresh, str) or not refresh.strip()):
        raise UsageError("refresh_token must be a non-empty string when given; nothing was stored")
    access = access.strip()
    expires = _parse_expiry(data.get("expires_at"), access)
    claims = decode_claims(access)
    if claims and claims.tenant_id and tenant.company_id and str(tenant.company_id) != claims.tenant_id:
        raise UsageError(f"the access token belongs to Fortnox company {claims.tenant_id}, but tenant {tid} is "
                         f"company {tenant.company_id}; nothing was stored")
    mode = "service" if tenant.service_account and not refresh else "oauth"
    st.connections.store_tokens(
        tid, access_token=access, refresh_token=refresh.strip() if refresh else None, expires_at=expires,
        scopes=claims.scopes if claims else (), mode=mode,
        company_id=claims.tenant_id if claims else tenant.company_id, user_id=claims.user_id if claims else None,
        client_id=claims.client_id if claims else None)
    st.audit.record("credentials_stored", actor="cli", tenant_id=tid, detail={"kind": mode})
    print(f"stored credentials for {tid} (encrypted); the access token expires {expires.isoformat()}")
    if not refresh and mode == "oauth":
        print("note: without a refresh token the connection stops when the access token expires", file=sys.stderr)
    return 0


def _connect(args) -> int:
    try:
        tid = rules.check_id(args.tenant)
    except rules.TenantInputError as exc:
        raise UsageError(str(exc)) from None
    s, st = common.store(also=("FORTNOX_CLIENT_ID", "FORTNOX_REDIRECT_URI"))
    tenant = st.tenants.get(tid)
    if tenant is None:
        raise UsageError(f"tenant {tid!r} is not registered: fortnox-bot tenant add {tid} --kinds ...")
    from bot.fix.consent import consent_link
    from bot.fortnox.scopes import KIND_SCOPES, needed_scopes

    unrequestable = sorted(needed_scopes([k for k in tenant.kinds if k in KIND_SCOPES]) - s.fortnox_scopes)
    url = consent_link(s, st, tenant, request_id=None, created_by="cli")
    st.audit.record("link_issued", actor="cli", tenant_id=tid, detail={"kind": "connect"})
    print(url)
    print(f"(single use; valid for {s.consent_link_ttl_hours:g} h; send it to the customer's Fortnox system "
          "administrator)", file=sys.stderr)
    if unrequestable:
        print(f"warning: {tid}'s exports also need {', '.join(unrequestable)}, which FORTNOX_SCOPES does not list; "
              "this link cannot ask for it", file=sys.stderr)
    return 0
