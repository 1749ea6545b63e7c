"""`/fortnox` subcommands. Each returns the immediate (ephemeral) answer; slow work goes to the job queue."""
from __future__ import annotations

from bot.aio import run_db
from bot.diagnosis import catalogue
from bot.diagnosis.model import Cause
from bot.slack import commands
from bot.slack.context import CommandContext
from bot.slack.replies import ephemeral, plural


async def find_tenant(bot, arg: str):
    """(tenant, answer): the tenant, or an answer explaining why none was found."""
    if not arg:
        return None, ephemeral("Which tenant? Usage: `/fortnox diagnose <tenant>`")
    tenant = await run_db(bot.store.tenants.find, arg)
    if tenant is not None:
        return tenant, None
    known = await run_db(bot.store.tenants.ids_and_names)
    names = dict(known)
    hints = [f"{tid} ({names[tid]})" if names.get(tid) and names[tid] != tid else tid
             for tid in commands.suggest(arg, known)]
    hint = f" Did you mean {' or '.join(hints)}?" if hints else " `fortnox-bot tenant list` shows the registered ones."
    return None, ephemeral(f"No tenant called “{arg}” is registered.{hint}")


async def diagnose(ctx: CommandContext) -> dict:
    tenant, answer = await find_tenant(ctx.bot, ctx.arg)
    if tenant is None:
        return answer
    # People asking about one tenant at once share one diagnosis (Fortnox allows 25 calls per 5 s per tenant);
    # each gets the answer.
    await ctx.bot.enqueue("diagnose", {"tenant": tenant.id, "trigger": "slash",
                                       "requests": [{"user": ctx.user_id, "response_url": ctx.response_url}]},
                          coalesce=f"slash:{tenant.id}", join="requests")
    return ephemeral(f"Diagnosing {tenant.name or tenant.id}… the result follows here in a moment.")


async def status(ctx: CommandContext) -> dict:
    affected = {}
    live = []
    for inc in await run_db(ctx.bot.store.incidents.live, 30):
        if inc.platform:
            affected[inc.id] = len(await run_db(ctx.bot.store.incidents.children, inc.id))
            if not affected[inc.id]:
                continue   # opened by a diagnosis whose tenant recovered meanwhile: nothing to show
        live.append(inc)
    if not live:
        return ephemeral("No open incidents. 🎉")
    names = dict(await run_db(ctx.bot.store.tenants.ids_and_names))
    lines = [f"{plural(len(live), 'open incident')}:"]
    for inc in live:
        if inc.platform:
            who = f"All tenants ({plural(affected[inc.id], 'tenant')} affected)"
        else:
            name = names.get(inc.tenant_id)
            who = f"{name} ({inc.tenant_id})" if name and name != inc.tenant_id else inc.tenant_id
        state = f", snoozed until {inc.snoozed_until:%Y-%m-%d %H:%M} UTC" if inc.status == "snoozed" and inc.snoozed_until else ""
        lines.append(f"• {who}: {_title(inc.cause)}{state} — {plural(inc.failures, 'failure')}, "
                     f"last {inc.last_seen_at:%Y-%m-%d %H:%M} UTC · {inc.id}")
    return ephemeral("\n".join(lines))



def _title(cause: str) -> str:
    try:
        return catalogue.entry(Cause(cause)).title
    except ValueError:
        return "diagnosis running"


async def help_(ctx: CommandContext) -> dict:
    return {"response_type": "ephemeral", "text": commands.HELP}


ROUTES = {
    "diagnose": diagnose,
    "status": status,
    "help": help_,
}
