"""Buttons on an incident alert: re-run diagnosis, snooze, resolve. Each handler: check, one domain call, answer."""
from __future__ import annotations

from bot.aio import run_db
from bot.slack.context import ActionContext
from bot.slack.replies import ephemeral, thread_note, who


async def _incident(ctx: ActionContext):
    inc = await run_db(ctx.bot.store.incidents.get, ctx.value)
    if inc is None:
        await ctx.respond(**ephemeral(f"Incident {ctx.value} no longer exists."))
    return inc


async def rerun(ctx: ActionContext) -> None:
    inc = await _incident(ctx)
    if inc is None:
        return
    if inc.platform:
        # A platform incident: re-diagnose each affected tenant.
        children = await run_db(ctx.bot.store.incidents.children, inc.id)
        targets = [c.id for c in children if c.open_key is not None]
    else:
        targets = [inc.id]
    for incident_id in targets:
        await run_db(ctx.bot.store.jobs.enqueue, "diagnose",
                     {"incident": incident_id, "trigger": "rerun", "user": ctx.user_id},
                     coalesce=f"rerun:{incident_id}")
    ctx.bot.notify()
    await ctx.respond(**ephemeral(f"Re-running the diagnosis of {inc.tenant_id or 'every affected tenant'}…"))


async def snooze(ctx: ActionContext) -> None:
    incident_id, _, choice = ctx.value.partition("|")   # option values are "<incident>|<1h|4h|1d>"
    ctx.value = incident_id
    inc = await _incident(ctx)
    if inc is None:
        return
    until = await ctx.bot.incidents.snooze(inc.id, choice, actor=ctx.user_id)
    if until is None:
        await ctx.respond(**ephemeral("That incident is already resolved, or the snooze choice is not known."))
        return
    await thread_note(ctx.bot, inc.id, "💤 Snoozed by ", who(ctx.user_id), f" until {until:%Y-%m-%d %H:%M} UTC")


async def resolve(ctx: ActionContext) -> None:
    inc = await _incident(ctx)
    if inc is None:
        return
    if not await ctx.bot.incidents.resolve(inc.id, actor=ctx.user_id, how="marked resolved in Slack"):
        await ctx.respond(**ephemeral(f"Incident {inc.id} was already resolved by {inc.resolved_by or 'someone'}."))
        return
    await thread_note(ctx.bot, inc.id, "✅ Marked resolved by ", who(ctx.user_id))


ROUTES = {
    "diagnose.rerun": rerun,
    "incident.snooze": snooze,
    "incident.resolve": resolve,
}
