"""The slash-command diagnosis job: run it, answer through response_url, open or heal the incident."""
from __future__ import annotations

import logging

from bot.aio import run_db
from bot.cards.diagnosis_card import build_diagnosis_card
from bot.slack.render import render_card
from bot.slack.replies import ephemeral, thread_note, who

log = logging.getLogger(__name__)


async def _respond(bot, response_url: str, message: dict) -> None:
    await bot.enqueue("slack.respond", {"response_url": response_url, "message": message})


def _askers(payload: dict) -> list[dict]:
    """Who asked ({"user", "response_url"} each); jobs queued before requests were shared carry one."""
    if "requests" in payload:
        return [r for r in payload["requests"] if isinstance(r, dict)]
    return [{"user": payload.get("user", ""), "response_url": payload.get("response_url")}]


async def diagnose_request(bot, payload: dict) -> None:
    tenant_id, askers = payload["tenant"], _askers(payload)
    users = list(dict.fromkeys(a.get("user") for a in askers if a.get("user")))
    user = users[0] if users else ""
    try:
        diagnosis = await bot.runtime.diagnoser.run(tenant_id, trigger="slash")
        tenant = await run_db(bot.store.tenants.get, tenant_id)
        incident_id = await bot.incidents.open_for_diagnosis(tenant_id, diagnosis, actor=user or "bot")
        inc = await run_db(bot.store.incidents.get, incident_id) if incident_id else None
        # The alert may not be posted yet: name the channel it goes to.
        channel = (inc.channel or (tenant.channel if tenant else None) or bot.settings.alert_channel) if inc else None
        card = build_diagnosis_card(diagnosis, tenant.name if tenant else "", incident_id, channel)
        message = {"response_type": "ephemeral", "replace_original": False, **render_card(card)}
        if incident_id and users:
            named = [who(users[0])]
            for other in users[1:]:
                named += [", ", who(other)]
            await thread_note(bot, incident_id, "🔎 Diagnosed by ", *named, f" with /fortnox: {diagnosis.cause}")
    except Exception as exc:   # the user asked and waits: tell them, never leave silence (F-S1)
        log.exception("slash diagnosis of %s failed", tenant_id)
        message = ephemeral(f"The diagnosis of {tenant_id} failed ({type(exc).__name__}). "
                            "It was logged; please try again in a minute.")
    for asker in askers:
        if asker.get("response_url"):
            await _respond(bot, asker["response_url"], message)
