"""Sign outgoing webhooks the way the platform signs ours (Standard Webhooks): used for replay calls and the demo."""
from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook


def signed_headers(secret: str, body: bytes, *, msg_id: str | None = None, timestamp: float | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    when = datetime.fromtimestamp(int(timestamp if timestamp is not None else time.time()), timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode("utf-8")),
        "content-type": "application/json",
    }
