"""Buttons on an incident alert: re-run diagnosis, snooze, resolve. Each handler: check, one domain call, answer."""
from __future__ import annotations

from bot.aio import run_db
from bot.cards.model import Text
from bot.incidents.card import actor_parts
from bot.incidents.service import SNOOZE_CHOICES
from bot.slack.context import ActionContext
from bot.slack.replies import ephemeral, plural, thread_note, who


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
        # A platform incident: re-diagnose each affected tenant; one thread line for all, not one per tenant.
        children = await run_db(ctx.bot.store.incidents.children, inc.id)
        targets = [c.id for c in children if c.open_key is not None]
        await thread_note(ctx.bot, inc.id, "🔎 Re-diagnosis of ", plural(len(targets), "affected tenant"),
                          " started by ", who(ctx.user_id), "; this message follows the results.")
    else:
        targets = [inc.id]
    for incident_id in targets:
        await ctx.bot.enqueue("diagnose",
                              {"incident": incident_id, "trigger": "rerun", "user": ctx.user_id,
                               "announce": not inc.platform},
                              coalesce=f"rerun:{incident_id}")
    what = plural(len(targets), 'affected tenant') if inc.platform else inc.tenant_id
    await ctx.respond(**ephemeral(f"Re-running the diagnosis of {what}… the result follows in the alert's thread."))



async def snooze(ctx: ActionContext) -> None:
    incident_id, _, choice = ctx.value.partition("|")   # option values are "<incident>|<1h|4h|1d>"
    ctx.value = incident_id
    inc = await _incident(ctx)
    if inc is None:
        return
    if choice not in SNOOZE_CHOICES:
        await ctx.respond(**ephemeral("That snooze choice is not known; pick one from the menu."))
        return
    until = await ctx.bot.incidents.snooze(inc.id, choice, actor=ctx.user_id)
    if until is None:
        await ctx.respond(**ephemeral(await _already_resolved(ctx, inc.id)))
        return
    await thread_note(ctx.bot, inc.id, "💤 Snoozed by ", who(ctx.user_id), f" until {until:%Y-%m-%d %H:%M} UTC")


async def resolve(ctx: ActionContext) -> None:
    inc = await _incident(ctx)
    if inc is None:
        return
    if not await ctx.bot.incidents.resolve(inc.id, actor=ctx.user_id, how="marked resolved in Slack"):
        await ctx.respond(**ephemeral(await _already_resolved(ctx, inc.id)))
        return
    await thread_note(ctx.bot, inc.id, "✅ Marked resolved by ", who(ctx.user_id))


async def _already_resolved(ctx: ActionContext, incident_id: str) -> Text:
    """Read again: another click may have won the race a moment ago."""
    inc = await run_db(ctx.bot.store.incidents.get, incident_id)
    whom = actor_parts(inc.resolved_by if inc is not None else None)
    when = f" at {inc.resolved_at:%Y-%m-%d %H:%M} UTC" if inc is not None and inc.resolved_at else ""
    return Text.of(f"Incident {incident_id} was already resolved by ", *whom, when, ".")


ROUTES = {
    "diagnose.rerun": rerun,
    "incident.snooze": snooze,
    "incident.resolve": resolve,
}
