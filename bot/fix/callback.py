"""`GET /oauth/fortnox/callback` (completed by the fix-loop work)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse


async def oauth_callback(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>Not available</title><p>Consent callbacks are not enabled yet.</p>",
                        status_code=400)
