"""Build realistic worlds: a tenant in the bot's store whose tokens came from the sandbox's Fortnox."""
from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import datetime, timezone

import httpx
from standardwebhooks.webhooks import Webhook

from bot.fortnox.claims import decode_claims
from bot.fortnox.scopes import needed_scopes
from storage.models import Tenant

CLIENT_ID, CLIENT_SECRET = "sandbox-client", "sandbox-secret"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"fortnox-bot-test-webhook-secret!").decode()
ADMIN, ADMIN2, OPERATOR, OUTSIDER = "U0ADMIN1", "U0ADMIN2", "U0OPERATOR", "U0OUTSIDER"
ALERT_CHANNEL, TENANT_CHANNEL = "C0ALERTS", "C0ACME"


def seed_tenant(store, world, tenant_id: str = "acme", *, company: int = 1234567, user: int = 7, name: str = "Acme AB",
                kinds=("invoice", "customer"), scopes=None, sysadmin: bool = True, channel: str | None = None,
                licences=None, rights=None, grant: bool = True, access_expires_in: int = 3600,
                service_account: bool = False, company_id_known: bool = True) -> dict | None:
    """Register the tenant with the bot and (unless grant=False) store tokens Fortnox issued for it."""
    if world.company(company) is None:
        world.add_company(company, name, licences=licences)
    if world.user(company, user) is None:
        world.add_user(company, user, f"User {user}", sysadmin=sysadmin, rights=rights)
    store.tenants.add(Tenant(id=tenant_id, name=name, channel=channel, kinds=list(kinds),
                             service_account=service_account, company_id=str(company) if company_id_known else None))
    if not grant:
        return None
    wanted = set(scopes) if scopes is not None else set(needed_scopes(kinds)) | {"profile"}
    tokens = world.issue_grant(company, user, wanted, access_expires_in=access_expires_in)
    claims = decode_claims(tokens["access_token"])
    store.connections.store_tokens(
        tenant_id, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"],
        expires_at=datetime.fromtimestamp(tokens["expires_at"], timezone.utc), scopes=claims.scopes,
        company_id=claims.tenant_id, user_id=claims.user_id, client_id=claims.client_id)
    return tokens


def export_event(tenant: str = "acme", *, event_id: str | None = None, type: str = "export.failed", kind="invoice",
                 ref="INV-1001", status=401, body=None, occurred_at: str | None = None) -> dict:
    if body is None:
        body = {"ErrorInformation": {"error": 1, "message": "Invalid login", "code": 2000310}}
    event = {"id": event_id or f"evt_{secrets.token_hex(6)}", "type": type, "tenant": tenant,
             "occurred_at": occurred_at or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "export": {"kind": kind, "ref": ref}}
    if status is not None or body is not None:
        event["fortnox"] = {"status": status, "body": body}
    return event


def signed_webhook(body: bytes | str | dict, *, secret: str = WEBHOOK_SECRET, msg_id: str | None = None,
                   timestamp: float | None = None, content_type: str = "application/json") -> tuple[bytes, dict]:
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body.encode() if isinstance(body, str) else body)
    ts = int(timestamp if timestamp is not None else time.time())
    msg_id = msg_id or f"msg_{secrets.token_hex(6)}"
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, timezone.utc), raw.decode("utf-8", "replace"))
    # Built here rather than with bot.webhooks.signing so tests can sign bodies that are not UTF-8 JSON.
    return raw, {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature,
                 "content-type": content_type}


def post_event(base_url: str, event: dict, **kw) -> httpx.Response:
    body, headers = signed_webhook(event, **kw)
    return httpx.post(f"{base_url}/webhooks/export-failure", content=body, headers=headers, timeout=10)
