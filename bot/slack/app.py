"""Bolt AsyncApp wiring: one routing table for commands and buttons; cross-cutting rules as middleware.

Handlers are a few lines each (see *_actions.py, command_handlers.py); this module only routes, acks
within Slack's 3 seconds, turns failures into an ephemeral message, and dedupes Events API retries.
"""
from __future__ import annotations

import asyncio
import logging
import re

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.aio import run_db
from bot.slack import command_handlers, commands, incident_actions
from bot.slack.context import ActionContext, CommandContext
from bot.slack.replies import ephemeral

log = logging.getLogger(__name__)

class _ClientGivenNotice(logging.Filter):
    """Bolt warns at every start that SLACK_BOT_TOKEN (read from the environment) is unused because a client
    is given. Giving our client (with its retry handlers) is the intent, so the warning only misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.AsyncApp").addFilter(_ClientGivenNotice())

ACK_BUDGET = 2.0   # seconds a command handler may take before we answer for it (Slack allows 3)
_after_ack: set[asyncio.Task] = set()   # work started after an ack; referenced until done (else GC may drop it)


def after_ack(coro, name: str) -> None:
    """Run `coro` once the HTTP answer is on its way (Bolt runs with process_before_response=True, so a
    listener's answer goes when the listener returns; a button's work continues here)."""
    task = asyncio.create_task(coro, name=name)
    _after_ack.add(task)
    task.add_done_callback(_after_ack.discard)


def _routes(bot) -> tuple[dict, dict]:
    actions = dict(incident_actions.ROUTES)
    cmds = dict(command_handlers.ROUTES)
    for extension in bot.extensions.get("slack_routes", []):
        actions.update(extension.get("actions", {}))
        cmds.update(extension.get("commands", {}))
    return actions, cmds


def build_slack(bot):
    settings = bot.settings
    app = AsyncApp(client=bot.slack,
                   signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
                   request_verification_enabled=not settings.socket_mode,
                   ignoring_self_events_enabled=True,
                   # Answer when the listener returns: without it Bolt runs the listener aside and checks every
                   # 10 ms whether it has acked yet, which costs each request 10 ms and CPU. Listeners here
                   # ack first and leave slow work to after_ack() or the job queue.
                   process_before_response=True)
    action_routes, command_routes = _routes(bot)

    @app.middleware
    async def dedupe_events(body, next, logger):
        """Slack redelivers events (F-S2); the store remembers event ids across restarts and replicas."""
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if event_id and body.get("type") == "event_callback":
            first = await run_db(bot.store.slack_events.first_time, str(event_id), str(body.get("team_id", "")))
            if not first:
                return BoltResponse(status=200, body="")
        return await next()

    @app.command("/fortnox")
    async def fortnox_command(ack, body, respond):
        parsed = commands.parse(body.get("text"))
        handler = command_routes.get(parsed.name)
        if handler is None:
            await ack(response_type="ephemeral",
                      text=commands.escape_for_help(parsed.raw[:80]) + "\n\n" + commands.HELP)
            return
        ctx = CommandContext(bot=bot, user_id=body.get("user_id", ""), channel_id=body.get("channel_id", ""),
                             response_url=body.get("response_url", ""), arg=parsed.arg)
        try:
            answer = await asyncio.wait_for(handler(ctx), timeout=ACK_BUDGET)
        except asyncio.TimeoutError:
            # The handler may still finish in the background: do not claim that nothing happened.
            answer = ephemeral("The bot is slow to answer right now. If no result follows within a minute, "
                               "please try again.")
        except Exception:
            log.exception("/fortnox %s failed", parsed.name)
            answer = ephemeral("Something went wrong handling that command. It was logged; please try again.")
        # ack() takes only what goes into the HTTP answer; response_url-only keys stay out.
        await ack(**{k: v for k, v in answer.items() if k in ("text", "blocks", "response_type")})

    @app.action(re.compile(r".*"))
    async def any_action(ack, body, action, respond):
        await ack()   # first, always: Slack shows an error after 3 s
        after_ack(_run_action(body, action, respond), f"action {action.get('action_id', '')}")

    async def _run_action(body, action, respond):
        handler = action_routes.get(action.get("action_id", ""))
        if handler is None:
            await respond(**ephemeral("This button is no longer supported."))
            return
        value = action.get("value") or (action.get("selected_option") or {}).get("value") or ""
        container = body.get("container") or {}
        ctx = ActionContext(bot=bot, user_id=(body.get("user") or {}).get("id", ""),
                            action_id=action["action_id"], value=value,
                            channel_id=(body.get("channel") or {}).get("id") or container.get("channel_id", ""),
                            message_ts=container.get("message_ts", ""), response_url=body.get("response_url", ""),
                            respond=respond)
        try:
            await handler(ctx)
        except Exception:
            log.exception("action %s failed", ctx.action_id)
            try:
                await respond(**ephemeral("Something went wrong with that button. It was logged; nothing was changed."))
            except Exception as exc:   # e.g. a payload without response_url: nowhere to answer, never a 500
                log.warning("could not answer action %s: %s", ctx.action_id, type(exc).__name__)

    @app.event("app_mention")
    async def mention(event, say):
        text = re.sub(r"<@[A-Z0-9]+>", "", event.get("text", "")).strip()
        parsed = commands.parse(text)

        async def reply():
            try:
                await say(text=commands.HELP if parsed.name != "status" else "Use `/fortnox status` for open incidents.",
                          thread_ts=event.get("ts"))
            except Exception as exc:
                log.warning("could not answer a mention: %s", type(exc).__name__)
        after_ack(reply(), "mention reply")   # Events API: the 200 goes at once, the reply after it

    handler = AsyncSlackRequestHandler(app)
    socket_mode = None
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        socket_mode = AsyncSocketModeHandler(app, settings.slack_app_token)
    bot.slack_app = app
    return handler, socket_mode

