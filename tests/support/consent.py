"""The customer's side of the fix loop in tests: Fortnox's consent page driven as a browser would, the link
in the alert's thread, and a tiny platform endpoint that checks replay signatures and counts calls."""
from __future__ import annotations

import html
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx

from bot.sandbox.customer import consent_in_sandbox
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.seed import ADMIN, OPERATOR, TENANT_CHANNEL, WEBHOOK_SECRET, export_event, post_event, seed_tenant

_LINK = re.compile(r"https?://\S+/auth\?\S+")


def link_in(text: str) -> str:
    """The consent link in a thread reply (Slack text escapes & as &amp;)."""
    match = _LINK.search(text)
    assert match, f"no consent link in: {text[:300]}"
    return html.unescape(match.group(0))


def thread_links(slack, channel: str, ts: str) -> list[str]:
    """The distinct consent links posted in an alert's thread (each message names its link in sv and en)."""
    return sorted({html.unescape(m) for r in slack.thread(channel, ts) for m in _LINK.findall(r.text or "")})


def consent_in_fortnox(link: str, *, company: int, user: int, action: str = "approve") -> httpx.Response:
    """Open the link, log in, press "Godkänn & aktivera" (or "Avbryt"); returns Fortnox's redirect, not followed."""
    return consent_in_sandbox(link, company=company, user=user, action=action)


def callback_params(redirect: httpx.Response) -> dict[str, str]:
    assert redirect.status_code == 302, redirect.text[:300]
    return {k: v[0] for k, v in parse_qs(urlsplit(redirect.headers["location"]).query).items()}


@dataclass
class Received:
    headers: dict
    body: dict
    signature_ok: bool


@dataclass
class ReplayReceiver:
    """The platform's replay endpoint: verifies the Standard Webhooks signature, records, answers `statuses`."""

    statuses: list[int] = field(default_factory=list)   # answers in order; then 202
    calls: list[Received] = field(default_factory=list)
    url: str = ""

    def __enter__(self) -> "ReplayReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(WEBHOOK_SECRET).verify(raw, headers)
                    ok = True
                except WebhookVerificationError:
                    ok = False
                receiver.calls.append(Received(headers, json.loads(raw or b"{}"), ok))
                status = receiver.statuses.pop(0) if receiver.statuses else 202
                self.send_response(status if ok else 401)
                if status >= 300:
                    self.send_header("retry-after", "0")   # try again at once: keeps tests fast
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/replay"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def failing_incident(server, store, world, tenant: str = "acme", *, company: int = 555, user: int = 7,
                     channel: str | None = TENANT_CHANNEL, **seed) -> str:
    """A tenant whose integration the customer removed, and its posted alert. Returns the incident id."""
    seed_tenant(store, world, tenant, company=company, user=user, channel=channel, access_expires_in=30, **seed)
    world.remove_integration(company)
    response = post_event(server.url, export_event(tenant))
    assert response.status_code == 202, response.text
    server.drain()
    return response.json()["incident"]


def approve_directly(server, incident_id: str, *, requester: str = OPERATOR, approver: str = ADMIN):
    """Request and approve through the domain (the Slack clicks have their own tests). Returns the Decision."""
    fix = server.bot.fix.reactivations
    requested = server.call(fix.request(incident_id, by=requester))
    assert requested.kind == "created", requested
    decision = server.call(fix.decide(requested.request.id, by=approver, approve=True))
    assert decision.kind == "approved" and decision.link, decision
    server.drain()
    return decision
