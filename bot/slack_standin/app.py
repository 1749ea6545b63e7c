"""HTTP face of the stand-in: Slack's Web API under /api/, response_urls under /response/."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .methods import Reply, call_api, post_response
from .state import Call, StandinState

# Form-encoded calls carry these as JSON strings; decoded so tests see Python objects.
_JSON_FIELDS = ("blocks", "attachments", "metadata")


def _to_response(reply: Reply) -> Response:
    if isinstance(reply.body, str):
        return PlainTextResponse(reply.body, reply.status, headers=reply.headers)
    return JSONResponse(reply.body, reply.status, headers=reply.headers)


async def _args(request: Request) -> tuple[dict | None, str | None]:
    """Query + body arguments, or (None, error code) as Slack would answer."""
    args: dict = dict(request.query_params)
    body = await request.body()
    if body:
        if "json" in request.headers.get("content-type", ""):
            try:
                data = json.loads(body)
            except ValueError:
                return None, "invalid_json"
            if not isinstance(data, dict):
                return None, "json_not_object"
            args.update(data)
        else:  # application/x-www-form-urlencoded, Slack's default
            args.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    for name in _JSON_FIELDS:
        if isinstance(args.get(name), str):
            try:
                args[name] = json.loads(args[name])
            except ValueError:
                pass  # left as a string: the method answers invalid_blocks_format
    return args, None


def _token(request: Request, args: dict) -> str | None:
    token = args.pop("token", None)
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    return token


def create_app(state: StandinState) -> Starlette:
    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def api(request: Request) -> Response:
        # The request is read first and answered late: like Slack when its answer is lost in a timeout or a
        # crash of the caller, the call still takes effect.
        args, error = await _args(request)
        if state.latency:
            await asyncio.sleep(state.latency)
        if args is None:
            state.record(Call(request.path_params["method"], {}, None, time.time(), 200, error))
            return JSONResponse({"ok": False, "error": error})
        reply = call_api(state, request.path_params["method"], args, _token(request, args), base_url(request))
        return _to_response(reply)

    async def response_url(request: Request) -> Response:
        raw = await request.body()
        if state.latency:
            await asyncio.sleep(state.latency)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        return _to_response(post_response(state, request.path_params["key"], body))

    async def permalink(request: Request) -> Response:
        # Lets a printed permalink be opened during the demo.
        channel, p = request.path_params["channel"], request.path_params["p"]
        ts = f"{p[1:-6]}.{p[-6:]}" if p.startswith("p") and len(p) > 7 else ""
        message = state.messages.get((channel, ts))
        if message is None:
            return PlainTextResponse("message_not_found", 404)
        return JSONResponse({"channel": channel, "ts": ts, "text": message.text, "blocks": message.blocks})

    return Starlette(
        routes=[
            Route("/api/{method}", api, methods=["GET", "POST"]),
            Route("/response/{key:path}", response_url, methods=["POST"]),
            Route("/archives/{channel}/{p}", permalink, methods=["GET"]),
        ]
    )
