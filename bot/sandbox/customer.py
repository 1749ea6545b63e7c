"""The customer's side of a consent in the sandbox: open the link, log in, press a button (demo and tests)."""
from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx


class _ConsentForm(HTMLParser):
    """Reads the consent form the way a browser would submit it."""

    def __init__(self):
        super().__init__()
        self.action, self.fields = "", {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action", "")
        if tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


def consent_in_sandbox(link: str, *, company: int, user: int, action: str = "approve") -> httpx.Response:
    """Open the link, log in, press "Godkänn & aktivera" (or "Avbryt"); returns the sandbox's redirect, unfollowed."""
    with httpx.Client(timeout=10) as client:
        page = client.get(link)
        if page.status_code != 200 or "Aktivering" not in page.text:
            raise RuntimeError(f"the consent page did not open (HTTP {page.status_code}): {page.text[:200]}")
        form = _ConsentForm()
        form.feed(page.text)
        data = {**form.fields, "tenant_id": str(company), "user_id": str(user), "action": action}
        return client.post(urljoin(link, form.action), data=data)
