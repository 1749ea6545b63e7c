"""Tenant registration rules shared by the CLI and chat: ids, channels, export kinds, import files."""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

from bot.fortnox.scopes import KIND_SCOPES

TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,20}$")


class TenantInputError(ValueError):
    """Bad tenant data; the message says which field and why."""


@dataclass(frozen=True)
class TenantSpec:
    tenant: str
    name: str
    channel: str | None
    kinds: tuple[str, ...]


def check_id(tenant: str) -> str:
    tenant = (tenant or "").strip()
    if not TENANT_ID.match(tenant):
        raise TenantInputError(f"tenant id {tenant!r} is not valid: use 1-64 letters, digits, '.', '_' or '-'")
    return tenant


def check_channel(channel: str | None) -> str | None:
    if channel is None or not channel.strip():
        return None
    channel = channel.strip()
    if not CHANNEL_ID.match(channel):
        raise TenantInputError(f"channel {channel!r} is not a Slack channel ID (like C0123ABCD); "
                               "copy it from the channel's details in Slack")
    return channel


def parse_kinds(raw) -> tuple[str, ...]:
    """Kinds as a list, or a string separated by commas or spaces. Unknown kinds are an error naming them."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        items = [k for k in re.split(r"[\s,]+", raw.strip()) if k]
    elif isinstance(raw, (list, tuple)):
        if not all(isinstance(k, str) for k in raw):
            raise TenantInputError("kinds must be strings")
        items = [k.strip() for k in raw if k.strip()]
    else:
        raise TenantInputError("kinds must be a list of strings or a comma-separated string")
    items = [k.lower() for k in items]
    unknown = sorted(set(items) - set(KIND_SCOPES))
    if unknown:
        raise TenantInputError(f"unknown export kind(s): {', '.join(unknown)}; known: {', '.join(sorted(KIND_SCOPES))}")
    return tuple(dict.fromkeys(items))


def spec(tenant: str, name: str | None = None, channel: str | None = None, kinds=None) -> TenantSpec:
    tid = check_id(tenant)
    return TenantSpec(tid, (name or "").strip() or tid, check_channel(channel), parse_kinds(kinds))


COLUMNS = ("tenant", "name", "channel", "kinds")


def _text_field(row: dict, key: str) -> str | None:
    value = row.get(key)
    if value is None or isinstance(value, str):
        return value
    raise TenantInputError(f"{key} must be a string")


def _rows(reader):
    """The CSV rows; a malformed file (e.g. an unclosed quote) raises, naming the line, instead of swallowing rows."""
    try:
        yield from reader
    except csv.Error as exc:
        raise TenantInputError(f"line {reader.line_num}: not valid CSV ({exc})") from None


def parse_import(text: str, filename: str = "") -> list[TenantSpec]:
    """CSV with header tenant,name,channel,kinds (kinds space-separated) or a JSON list of objects.

    All or nothing: the first bad row raises, naming its line (CSV) or item (JSON) and the tenant.
    """
    stripped = text.lstrip("\ufeff").strip()
    if not stripped:
        raise TenantInputError("the file is empty")
    if filename.lower().endswith(".json") or stripped[0] in "[{":
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise TenantInputError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, list):
            raise TenantInputError("JSON must be a list of objects with tenant, name, channel, kinds")
        rows = [(f"item {i}", row) for i, row in enumerate(data, 1)]
    else:
        reader = csv.DictReader(io.StringIO(stripped), strict=True)   # an unclosed quote is an error, not a cell
        header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
        unknown = [h for h in header if h not in COLUMNS]
        if "tenant" not in header or unknown:
            extra = f" (unknown: {', '.join(repr(h) for h in unknown)})" if unknown else ""
            raise TenantInputError(f"CSV needs the header line tenant,name,channel,kinds{extra}")
        reader.fieldnames = header
        rows = []
        for row in _rows(reader):
            if None in row:   # more cells than header columns: a kinds list with commas, usually
                raise TenantInputError(f"line {reader.line_num}: more cells than columns; separate kinds with "
                                       "spaces, not commas")
            rows.append((f"line {reader.line_num}", row))
    if not rows:
        raise TenantInputError("the file lists no tenants")
    specs, seen = [], set()
    for where, row in rows:
        if not isinstance(row, dict):
            raise TenantInputError(f"{where}: expected an object with tenant, name, channel, kinds")
        tenant = row.get("tenant")
        label = f"{where} (tenant {tenant!r})" if isinstance(tenant, str) and tenant.strip() else where
        try:
            unknown = sorted(k for k in row if k not in COLUMNS)
            if unknown:
                raise TenantInputError(f"unknown key(s) {', '.join(map(repr, unknown))}; expected {', '.join(COLUMNS)}")
            s = spec(_text_field(row, "tenant") or "", _text_field(row, "name"), _text_field(row, "channel"),
                     row.get("kinds"))
        except TenantInputError as exc:
            raise TenantInputError(f"{label}: {exc}") from None
        if s.tenant in seen:
            raise TenantInputError(f"{label}: tenant {s.tenant!r} appears twice")
        seen.add(s.tenant)
        specs.append(s)
    return specs
