"""Slack side of the fix loop: request, approve, deny and replay buttons, and `/fortnox reactivate`.

Each handler: check who may act (the signed payload's user, never a button value), one call into
bot/fix, then an answer. The consent link goes only into the alert's thread, only after approval.
"""
from __future__ import annotations

import logging

from bot.aio import run_db
from bot.cards.model import Mention, Text
from bot.fix.messages import customer_message, when, why_consent_cannot_help
from bot.slack.command_handlers import find_tenant
from bot.slack.context import ActionContext, CommandContext
from bot.slack.render import render_text_reply
from bot.slack.replies import ephemeral

log = logging.getLogger(__name__)

REFUSED = ("Only Fortnox bot admins (FORTNOX_ADMINS, or members of the FORTNOX_ADMIN_GROUP user group) can approve "
           "or deny reactivations. Nothing was changed.")


async def _name(bot, tenant_id: str | None) -> str:
    tenant = await run_db(bot.store.tenants.get, tenant_id) if tenant_id else None
    return (tenant.name if tenant and tenant.name else tenant_id) or "this tenant"


def _live_request_answer(req, name: str) -> Text:
    if req.status == "pending":
        return Text.of(f"A reactivation link for {name} was already requested by ", Mention(req.requested_by),
                       f" at {when(req.requested_at)}; it awaits an admin's approval until {when(req.expires_at)}.")
    if req.status == "approved":
        return Text.of(f"A reactivation for {name} was already approved by ", Mention(req.decided_by or "?"),
                       f" at {when(req.decided_at)}; the consent link is in the alert's thread.")
    return Text.of(f"{name} has just consented in Fortnox; the bot is verifying the new connection.")


async def _request_answer(bot, outcome, incident_id: str) -> Text | str:
    inc = outcome.incident
    name = await _name(bot, inc.tenant_id if inc else None)
    if outcome.kind == "created":
        return (f"🔑 Reactivation link requested for {name}. An admin must approve it on the alert "
                f"(until {when(outcome.request.expires_at)}); the single-use link then appears in its thread.")
    if outcome.kind == "exists":
        return _live_request_answer(outcome.request, name)
    if outcome.kind == "missing":
        return f"Incident {incident_id} no longer exists."
    if outcome.kind == "resolved":
        return f"Incident {incident_id} is already resolved; there is nothing to reactivate."
    if inc is not None and inc.platform:
        return ("This alert is about every tenant at once (a problem on our side or Fortnox's): "
                "a customer's consent cannot fix it.")
    return why_consent_cannot_help(outcome.cause, name)


# --- buttons ------------------------------------------------------------------------------------
async def request(ctx: ActionContext) -> None:
    """Anyone in the channel may ask; an admin decides."""
    outcome = await ctx.bot.fix.reactivations.request(ctx.value, by=ctx.user_id)
    await ctx.respond(**ephemeral(await _request_answer(ctx.bot, outcome, ctx.value)))


def _decision_answer(d) -> Text | str:
    req = d.request
    if d.kind == "approved":
        return "✅ Approved. The single-use consent link is in the alert's thread, with a message for the customer."
    if d.kind == "denied":
        return "Denied. The request is closed; anyone can request a new link later."
    if d.kind == "self_approval":
        return ("You requested this reactivation yourself, so another admin must approve it "
                "(ALLOW_SELF_APPROVAL is off). Nothing was changed.")
    if d.kind == "missing":
        return "This reactivation request no longer exists. Nothing was changed."
    if d.kind == "moot":
        return (f"The incident was resolved meanwhile ({d.incident.resolution or 'no reason given'}), so the request "
                "is closed and no link was issued.")
    if d.kind == "expired":
        what = "its consent link was not used" if req.decided_by else "nobody decided"
        return (f"This reactivation request expired at {when(req.expires_at)} ({what}). Nothing else was changed; "
                "request a new link if it is still needed.")
    verb = "denied" if req.status == "denied" else "approved"
    return Text.of(f"Nothing was changed: this request was already {verb} by ", Mention(req.decided_by or "?"),
                   f" at {when(req.decided_at)}.")


async def _post_link(ctx: ActionContext, d) -> bool:
    """The link and the customer's message go in the alert's thread, never in the channel itself."""
    inc, tenant = d.incident, d.tenant
    company = (tenant.name or tenant.id) if tenant else d.request.tenant_id
    message = customer_message(company=company, link=d.link, expires_at=d.link_expires_at,
                               service_account=bool(tenant and tenant.service_account))
    text = Text.of("🔗 Reactivation approved by ", Mention(ctx.user_id),
                   f". Send this to the Fortnox system administrator at {company}:\n\n", message)
    if inc is None or not inc.message_ts:
        return False
    try:
        await ctx.bot.slack.chat_postMessage(channel=inc.channel, thread_ts=inc.message_ts, **render_text_reply(text))
        return True
    except Exception as exc:
        log.warning("posting the consent link for %s failed: %s", d.request.id, type(exc).__name__)
        return False


async def _decide(ctx: ActionContext, approve: bool) -> None:
    if not await ctx.bot.admins.is_admin(ctx.user_id):
        log.info("%s is not an admin: reactivation decision refused", ctx.user_id)
        await ctx.respond(**ephemeral(REFUSED))
        return
    d = await ctx.bot.fix.reactivations.decide(ctx.value, by=ctx.user_id, approve=approve)
    if d.kind == "approved" and not await _post_link(ctx, d):
        # The thread could not take it: hand the link to the approver alone rather than lose it.
        await ctx.respond(**ephemeral(Text.of("✅ Approved, but the alert's thread could not take the link; send "
                                              "this to the customer yourself:\n\n",
                                              customer_message(company=d.tenant.name or d.tenant.id, link=d.link,
                                                               expires_at=d.link_expires_at,
                                                               service_account=d.tenant.service_account))))
        return
    await ctx.respond(**ephemeral(_decision_answer(d)))


async def approve(ctx: ActionContext) -> None:
    await _decide(ctx, True)


async def deny(ctx: ActionContext) -> None:
    await _decide(ctx, False)


async def replay(ctx: ActionContext) -> None:
    inc = await run_db(ctx.bot.store.incidents.get, ctx.value)
    if inc is None or inc.tenant_id is None:
        await ctx.respond(**ephemeral(f"Incident {ctx.value} no longer exists, or is not about one tenant."))
        return
    if not await ctx.bot.fix.replayer.schedule(tenant_id=inc.tenant_id, incident_id=inc.id, actor=ctx.user_id):
        await ctx.respond(**ephemeral("Replays are not configured (PLATFORM_REPLAY_URL is not set)."))
        return
    await ctx.respond(**ephemeral(f"🔁 Asking the platform to re-run {inc.tenant_id}'s failed exports; "
                                  "the result appears in the alert's thread."))


# --- /fortnox reactivate <tenant> ---------------------------------------------------------------
async def reactivate(ctx: CommandContext) -> dict:
    if not ctx.arg:
        return ephemeral("Which tenant? Usage: `/fortnox reactivate <tenant>`")
    tenant, answer = await find_tenant(ctx.bot, ctx.arg)
    if tenant is None:
        return answer
    inc = await run_db(ctx.bot.store.incidents.live_for_tenant, tenant.id)
    if inc is not None and inc.cause != "pending" and inc.parent_id is None:
        outcome = await ctx.bot.fix.reactivations.request(inc.id, by=ctx.user_id)
        return ephemeral(await _request_answer(ctx.bot, outcome, inc.id))
    # No diagnosed incident to hang the buttons on: diagnose first (slow), then answer via response_url.
    await ctx.bot.enqueue("fix.reactivate", {"tenant": tenant.id, "user": ctx.user_id, "response_url": ctx.response_url},
                          coalesce=f"reactivate:{tenant.id}:{ctx.user_id}")
    return ephemeral(f"Checking {tenant.name or tenant.id}'s Fortnox connection first… the answer follows here.")


async def reactivate_job(bot, payload: dict) -> None:
    tenant_id, user, response_url = payload["tenant"], payload.get("user", ""), payload.get("response_url")
    try:
        diagnosis = await bot.runtime.diagnoser.run(tenant_id, trigger="reactivate")
        incident_id = await bot.incidents.open_for_diagnosis(tenant_id, diagnosis, actor=user or "bot")
        name = await _name(bot, tenant_id)
        if incident_id is None or not diagnosis.consent_can_fix:
            text = why_consent_cannot_help(str(diagnosis.cause), name)
        else:
            outcome = await bot.fix.reactivations.request(incident_id, by=user)
            text = await _request_answer(bot, outcome, incident_id)
        message = ephemeral(text)
    except Exception as exc:   # the user waits for an answer: never silence
        log.exception("reactivate %s failed", tenant_id)
        message = ephemeral(f"Requesting a reactivation for {tenant_id} failed ({type(exc).__name__}). "
                            "It was logged; please try again in a minute.")
    if response_url:
        await bot.enqueue("slack.respond", {"response_url": response_url, "message": message})


ROUTES = {
    "actions": {
        "reactivation.request": request,
        "reactivation.approve": approve,
        "reactivation.deny": deny,
        "exports.replay": replay,
    },
    "commands": {"reactivate": reactivate},
}
JOBS = {"fix.reactivate": reactivate_job}
