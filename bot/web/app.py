"""Assemble the ASGI app. Routes are thin: each hands the request to its module."""
from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics
from bot.aio import run_db
from bot.services import Bot
from bot.settings import Settings
from bot.webhooks.export import export_failure

log = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    ok = await run_db(request.app.state.bot.store.ping)
    return JSONResponse({"status": "ok"} if ok else {"status": "unavailable", "store": "not answering"},
                        status_code=200 if ok else 503)


async def metrics_endpoint(request: Request) -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def _not_found(request: Request, exc) -> JSONResponse:
    return JSONResponse({"error": "not found"}, status_code=404)


async def _method_not_allowed(request: Request, exc) -> JSONResponse:
    return JSONResponse({"error": "method not allowed"}, status_code=405)


async def _server_error(request: Request, exc) -> JSONResponse:
    # Last line of defence: log the details, show none (no stack traces or secrets to callers).
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"error": "internal error; the request was not processed"}, status_code=500)


def create_app(settings: Settings, bot: Bot | None = None, *, start_background: bool = True) -> Starlette:
    bot = bot or Bot(settings)
    from bot.fix.callback import oauth_callback
    from bot.slack import inbound as slack_inbound
    from bot.slack.app import build_slack

    slack_handler, socket_mode = build_slack(bot)

    async def slack_events(request: Request) -> Response:
        checked = await slack_inbound.checked(request, settings.slack_signing_secret)
        if isinstance(checked, Response):
            return checked
        try:
            response = await slack_handler.handle(checked)
            failed = response.status_code >= 500 and f"Bolt answered {response.status_code}"
        except Exception as exc:
            failed = type(exc).__name__
        if failed and not await bot.slack_reachable():
            # Bolt checks the bot token with auth.test before routing: Slack, not the request, is the problem.
            log.warning("Slack Web API at %s is unreachable; answering 503", settings.slack_api_url)
            return JSONResponse({"error": "Slack Web API unreachable; try again"}, status_code=503,
                                headers={"Retry-After": "30"})
        if failed:   # Bolt choked on the payload's shape (e.g. `actions` not a list) before any listener ran
            log.warning("slack request not readable by Bolt: %s", failed)
            return slack_inbound.refuse_unreadable(settings.slack_signing_secret, checked.state.raw_body,
                                                   checked.headers)
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if start_background:
            await bot.start()
        if socket_mode is not None:
            await socket_mode.connect_async()
        try:
            yield
        finally:
            if socket_mode is not None:
                await socket_mode.close_async()
            if start_background:
                await bot.stop()

    app = Starlette(
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/webhooks/export-failure", export_failure, methods=["POST"]),
            Route("/oauth/fortnox/callback", oauth_callback, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.bot = bot
    return app
