"""`fortnox-bot demo`: the whole product on this machine with no accounts.

SQLite in a temporary folder, the local Fortnox sandbox, a local Slack stand-in and the real bot server,
all over loopback. Demo tenants each fail in a different real way; their export failures arrive through
the signed webhook; we print what the bot concluded and the Block Kit it posted.
"""
from __future__ import annotations

import base64
import html
import json
import re
import secrets
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
from cryptography.fernet import Fernet

from bot.fortnox.claims import decode_claims
from bot.sandbox.customer import consent_in_sandbox
from bot.sandbox.runner import SandboxServer
from bot.sandbox.world import World
from bot.settings import load_settings
from bot.slack_standin import requests as slack_requests
from bot.slack_standin.runner import SlackStandin
from bot.web.runner import BotServer
from bot.webhooks.signing import signed_headers
from storage.models import Tenant

ALERT_CHANNEL, OPERATOR, ADMIN = "C0DEMOALERT", "U0DEMOOPS", "U0DEMOADMIN"
SIGNING_SECRET = secrets.token_hex(16)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
BUILDER = "https://app.slack.com/block-kit-builder#"

# tenant id, name, Fortnox company, export kinds, what goes wrong (a sentence), set-up function name
TENANTS = [
    ("acme", "Acme AB", 5550001, ["invoice", "customer"], "the customer removed the integration in Fortnox", "revoked"),
    ("bygg", "Bygg & Co", 5550002, ["invoice", "supplierinvoice"], "the company has no bookkeeping licence", "licence"),
    ("cafe", "Café Söder", 5550003, ["invoice", "order"], "the consent never included the order scope", "scopes"),
    ("dala", "Dala Trä AB", 5550004, ["invoice"], "the access token simply expired (the bot heals it)", "expired"),
    ("ekon", "Ekonomibyrån", 5550005, ["voucher"], "the activating user has no bookkeeping rights", "rights"),
    ("fisk", "Fisk & Skaldjur", 5550006, ["invoice"], "still on a retired legacy Access-Token", "legacy"),
]


def say(text: str = "") -> None:
    print(text, flush=True)


def _settings(url: str, db: Path, sandbox: SandboxServer, slack: SlackStandin):
    return load_settings(env={
        "DATABASE_URL": f"sqlite:///{db}", "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "SLACK_BOT_TOKEN": "xoxb-demo", "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.api_url,
        "ALERT_CHANNEL": ALERT_CHANNEL, "FORTNOX_ADMINS": ADMIN,
        "FORTNOX_CLIENT_ID": sandbox.world.client_id, "FORTNOX_CLIENT_SECRET": sandbox.world.client_secret,
        "FORTNOX_REDIRECT_URI": f"{url}/oauth/fortnox/callback", "FORTNOX_AUTH_URL": sandbox.auth_url,
        "FORTNOX_API_URL": sandbox.api_url, "EXPORT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }, need="serve")


def _seed(store, world: World) -> None:
    from bot.fortnox.scopes import needed_scopes

    for tid, name, company, kinds, _, how in TENANTS:
        licences = {"kundfaktura", "order", "lon", "arkivplats"} if how == "licence" else None
        world.add_company(company, name, licences=licences)
        world.add_user(company, 1, "Admin", sysadmin=how != "rights",
                       rights={"invoice", "customer", "companyinformation", "profile"} if how == "rights" else None)
        store.tenants.add(Tenant(id=tid, name=name, kinds=kinds, company_id=str(company)))
        if how == "legacy":
            store.connections.store_legacy(tid, world.legacy_token(company))
            continue
        scopes = set(needed_scopes(kinds)) | {"profile"}
        if how == "scopes":
            scopes.discard("order")
        grant = world.issue_grant(company, 1, scopes, access_expires_in=5 if how == "expired" else 3600)
        claims = decode_claims(grant["access_token"])
        store.connections.store_tokens(tid, access_token=grant["access_token"], refresh_token=grant["refresh_token"],
                                       expires_at=datetime.fromtimestamp(grant["expires_at"], timezone.utc),
                                       scopes=claims.scopes, company_id=claims.tenant_id, user_id=claims.user_id,
                                       client_id=claims.client_id)
        if how == "revoked":
            world.remove_integration(company)
    world.advance(10)   # the "expired" tenant's token is now past its time


def _event(tid: str, n: int, kind: str) -> dict:
    return {"id": f"evt_demo_{tid}_{n}", "type": "export.failed", "tenant": tid,
            "occurred_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "export": {"kind": kind, "ref": f"{kind.upper()[:3]}-{1000 + n}"},
            "fortnox": {"status": 401, "body": {"ErrorInformation": {"error": 1, "message": "Invalid login",
                                                                      "code": 2000310}}}}


def _post(url: str, event: dict) -> httpx.Response:
    body = json.dumps(event).encode()
    return httpx.post(f"{url}/webhooks/export-failure", content=body,
                      headers=signed_headers(WEBHOOK_SECRET, body), timeout=10)


def run() -> int:
    with tempfile.TemporaryDirectory(prefix="fortnox-bot-demo-") as tmp, \
            SandboxServer(World(client_id="demo-client", client_secret="demo-secret")) as sandbox, \
            SlackStandin(bot_token="xoxb-demo") as slack:
        server = BotServer(lambda url: _settings(url, Path(tmp) / "demo.db", sandbox, slack),
                           bot_kwargs={"maintenance": False, "worker_poll": 0.05})
        with server:
            store = server.bot.store
            say("fortnox-bot demo: everything runs on this machine (SQLite, a Fortnox sandbox, a Slack stand-in).")
            say(f"  bot {server.url}   Fortnox sandbox {sandbox.url}   Slack stand-in {slack.url}")
            _seed(store, sandbox.world)
            say("\n1. Export failures arrive through the signed webhook (Fortnox said 2000310 \"Invalid login\" each time):")
            for n, (tid, name, _, kinds, what, _) in enumerate(TENANTS + [("ghost", "(not registered)", 0, ["invoice"],
                                                                           "a tenant the bot does not know", "")]):
                answer = _post(server.url, _event(tid, n, kinds[0]))
                say(f"   {tid:<6} {what:<55} -> HTTP {answer.status_code} {answer.json()}")
            repeat = _post(server.url, _event("acme", 0, "invoice"))
            say(f"   acme   the same event delivered again                          -> HTTP {repeat.status_code} {repeat.json()}")
            server.drain(60)

            say("\n2. What the bot concluded, one incident per tenant:")
            for inc in sorted(store.incidents.all(), key=lambda i: i.tenant_id or ""):
                d = store.diagnoses.get(inc.diagnosis_id) if inc.diagnosis_id else None
                say(f"\n── {inc.tenant_id}: {inc.cause}  ({'alert posted' if inc.message_ts else 'no alert: ' + (inc.resolution or inc.status)})")
                if d is None:
                    continue
                say(f"   {d.summary}")
                for c in d.checks:
                    if c["status"] in ("fail", "warn"):
                        say(f"   {'✘' if c['status'] == 'fail' else '!'} {c['id']}: {c['detail']}")
                for step in d.steps:
                    who = "operator" if step["audience"] == "operator" else "customer's admin"
                    say(f"   {step['n']}. [{who}] {step['text']}")

            say("\n3. The Block Kit the bot posted (open a link to see it rendered in Slack's Block Kit Builder):")
            for (channel, ts), message in slack.messages.items():
                if message.thread_ts:
                    continue
                link = BUILDER + quote(json.dumps({"blocks": message.blocks}, separators=(",", ":")))
                say(f"   {channel} {ts}: {html.unescape(message.text or '')}")
                say(f"     {len(message.blocks)} blocks; Block Kit Builder: {link[:160]}{'…' if len(link) > 160 else ''}")
            first = next((m for m in slack.messages.values() if not m.thread_ts), None)
            if first is not None:
                say("\n   Full Block Kit of the first alert:")
                say("   " + json.dumps({"blocks": first.blocks}, ensure_ascii=False)[:3000])

            say("\n4. A support agent types `/fortnox diagnose cafe` in Slack:")
            body, headers = slack_requests.slash_command(SIGNING_SECRET, text="diagnose cafe", user_id=OPERATOR,
                                                         channel_id=ALERT_CHANNEL,
                                                         response_url=slack.response_url("demo-cmd"))
            started = time.monotonic()
            ack = httpx.post(f"{server.url}/slack/events", content=body, headers=headers, timeout=10)
            say(f"   Slack got HTTP {ack.status_code} in {1000 * (time.monotonic() - started):.0f} ms: "
                f"{ack.json().get('text') if ack.headers.get('content-type', '').startswith('application/json') else ack.text}")
            server.drain(60)
            answers = slack.responses("demo-cmd")
            if answers:
                say(f"   then, through the response_url: {answers[-1].get('text')}")

            _fix_loop(server, slack, sandbox)

            posts = slack.calls_to("chat.postMessage")
            alerts = sum(1 for c in posts if not c.args.get("thread_ts"))
            say(f"\nDone: {len(TENANTS) + 1} tenants, {alerts} alerts, {len(posts) - alerts} thread replies, "
                f"{len(slack.calls_to('chat.update'))} message updates, "
                f"{sum(1 for c in sandbox.world.token_calls if c['grant_type'] == 'refresh_token')} token refreshes.")
    return 0


_LINK = re.compile(r"https?://\S+/auth\?\S+")


def _click(server: BotServer, slack: SlackStandin, inc, action_id: str, value: str, user: str) -> httpx.Response:
    key = f"demo-{action_id}-{user}"
    body, headers = slack_requests.block_action(SIGNING_SECRET, action_id=action_id, value=value, user_id=user,
                                                channel_id=inc.channel, message_ts=inc.message_ts,
                                                response_url=slack.response_url(key))
    before = len(slack.calls)
    answer = httpx.post(f"{server.url}/slack/events", content=body, headers=headers, timeout=10)
    # Slack gets its ack first; the click's work goes on after it. Wait until it has said or queued something.
    deadline = time.monotonic() + 10
    while len(slack.calls) == before and not slack.responses(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    server.drain(60)
    return answer


def _fix_loop(server: BotServer, slack: SlackStandin, sandbox: SandboxServer) -> None:
    store = server.bot.store
    inc = store.incidents.live_for_tenant("acme")
    if inc is None or not inc.message_ts:
        say("\n5. (skipped: acme has no open alert)")
        return
    say("\n5. Closing the loop for acme (the integration was removed in Fortnox):")
    _click(server, slack, inc, "reactivation.request", inc.id, OPERATOR)
    request = store.requests.latest_for_incident(inc.id)
    say(f"   the operator clicks \"Request reactivation link\" -> request {request.id}: {request.status}")
    _click(server, slack, inc, "reactivation.approve", request.id, OPERATOR)
    refusal = slack.responses(f"demo-reactivation.approve-{OPERATOR}")
    say(f"   the operator tries to approve it too -> refused: {refusal[-1].get('text', '')[:90] if refusal else '?'}")
    _click(server, slack, inc, "reactivation.approve", request.id, ADMIN)
    request = store.requests.latest_for_incident(inc.id)
    answer = slack.responses(f"demo-reactivation.approve-{ADMIN}")
    say(f"   an admin approves -> request {request.status}" + (f": {answer[-1].get('text', '')[:120]}" if answer else
                                                              "; the consent link is posted in the alert's thread"))
    links = {m for r in slack.thread(inc.channel, inc.message_ts) for m in _LINK.findall(html.unescape(r.text or ""))}
    if not links:
        say("   (no consent link found in the thread)")
        return
    link = sorted(links)[0]
    say(f"   link: {link[:110]}…")
    redirect = consent_in_sandbox(link, company=5550001, user=1)
    say(f"   the customer's admin logs in to Fortnox and clicks \"Godkänn & aktivera\" -> "
        f"HTTP {redirect.status_code} back to the bot")
    landing = httpx.get(redirect.headers["location"], timeout=10)
    title = re.search(r"<title>(.*?)</title>", landing.text, re.S)
    say(f"   the bot's callback page: HTTP {landing.status_code} \"{html.unescape(title.group(1).strip()) if title else ''}\"")
    server.drain(60)
    inc = store.incidents.get(inc.id)
    say(f"   incident {inc.id}: {inc.status} by {inc.resolved_by} ({inc.resolution})")
    message = slack.messages.get((inc.channel, inc.message_ts))
    if message is not None:
        status = next((b["text"]["text"] for b in message.blocks if b.get("type") == "section"), "")
        say(f"   the alert now reads: {html.unescape(status)[:120]}")
    say("   audit trail (fortnox-bot audit acme):")
    for row in store.audit.for_tenant("acme"):
        say(f"     {row.at:%H:%M:%S} {row.action:<20} {row.actor}")


def main() -> int:
    import logging

    logging.getLogger().setLevel(logging.ERROR)   # the demo prints its own story; warnings would only interleave
    try:
        return run()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:   # a demo that fails says why in one line
        print(f"fortnox-bot demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
