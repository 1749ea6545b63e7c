"""`GET /oauth/fortnox/callback`: Fortnox's redirect after the customer's consent. Parse, complete, show a page."""
from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse

from bot.fix.completion import Landing
from bot.web.pages import render_page

log = logging.getLogger(__name__)

# The URL carries a code and a state: keep it out of caches and Referer headers; the page loads nothing.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}


def _params(request: Request) -> dict[str, str]:
    """One value per name; a name given twice is suspicious, so it counts as a broken link."""
    out: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        out[name] = "\x00" if name in out else value   # "\x00" fails completion's input checks
    return out


async def oauth_callback(request: Request) -> HTMLResponse:
    bot = request.app.state.bot
    try:
        landing = await bot.fix.completion.complete(_params(request))
    except Exception as exc:   # never a stack trace (or a token in one) on the page
        log.error("consent callback failed: %s", type(exc).__name__)
        landing = Landing("error", 500)
    return HTMLResponse(render_page(landing), status_code=landing.status, headers=HEADERS)
