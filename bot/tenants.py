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


def parse_import(text: str, filename: str = "") -> list[TenantSpec]:
    """CSV with header tenant,name,channel,kinds (kinds space-separated) or a JSON list of objects."""
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
        rows = data
    else:
        reader = csv.DictReader(io.StringIO(stripped))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "tenant" not in header:
            raise TenantInputError("CSV needs a header line: tenant,name,channel,kinds")
        reader.fieldnames = header
        rows = list(reader)
    specs, seen = [], set()
    for i, row in enumerate(rows, 1):
        where = f"row {i}"
        if not isinstance(row, dict):
            raise TenantInputError(f"{where}: expected an object")
        try:
            s = spec(str(row.get("tenant") or ""), row.get("name"), row.get("channel"), row.get("kinds"))
        except TenantInputError as exc:
            raise TenantInputError(f"{where}: {exc}") from None
        if s.tenant in seen:
            raise TenantInputError(f"{where}: tenant {s.tenant!r} appears twice")
        seen.add(s.tenant)
        specs.append(s)
    return specs
