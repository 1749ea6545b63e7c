"""`/fortnox` subcommands. Each returns the immediate (ephemeral) answer; slow work goes to the job queue."""
from __future__ import annotations

from bot.aio import run_db
from bot.slack import commands
from bot.slack.context import CommandContext
from bot.slack.replies import ephemeral


async def find_tenant(bot, arg: str):
    """(tenant, answer): the tenant, or an answer explaining why none was found."""
    if not arg:
        return None, ephemeral("Which tenant? Usage: `/fortnox diagnose <tenant>`")
    tenant = await run_db(bot.store.tenants.find, arg)
    if tenant is not None:
        return tenant, None
    hints = commands.suggest(arg, await run_db(bot.store.tenants.ids_and_names))
    hint = f" Did you mean {', '.join(hints)}?" if hints else " `/fortnox status` lists tenants with open incidents."
    return None, ephemeral(f"No tenant called “{arg}” is registered.{hint}")


async def diagnose(ctx: CommandContext) -> dict:
    tenant, answer = await find_tenant(ctx.bot, ctx.arg)
    if tenant is None:
        return answer
    await run_db(ctx.bot.store.jobs.enqueue, "diagnose",
                 {"tenant": tenant.id, "trigger": "slash", "user": ctx.user_id, "response_url": ctx.response_url})
    ctx.bot.notify()
    return ephemeral(f"Diagnosing {tenant.name or tenant.id}… the result follows here in a moment.")


async def status(ctx: CommandContext) -> dict:
    live = await run_db(ctx.bot.store.incidents.live, 30)
    if not live:
        return ephemeral("No open incidents. 🎉")
    names = dict(await run_db(ctx.bot.store.tenants.ids_and_names))
    lines = [f"{len(live)} open incident{'s' if len(live) != 1 else ''}:"]
    for inc in live:
        who = f"{len(inc.affected)} tenants" if inc.platform else (names.get(inc.tenant_id) or inc.tenant_id)
        state = " (snoozed)" if inc.status == "snoozed" else ""
        lines.append(f"• {who}: {inc.cause}{state} — {inc.failures} failures, last {inc.last_seen_at:%Y-%m-%d %H:%M} UTC ({inc.id})")
    return ephemeral("\n".join(lines))


async def help_(ctx: CommandContext) -> dict:
    return {"response_type": "ephemeral", "text": commands.HELP}


ROUTES = {
    "diagnose": diagnose,
    "status": status,
    "help": help_,
}
