"""Build the neutral Card for an incident (the renderer that lives with the domain, as in Grafana OnCall).

Buttons appear only when their action works now: no reactivation for causes consent cannot fix,
no replay without PLATFORM_REPLAY_URL, nothing but history on a resolved incident.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.cards.model import Action, Card, CheckLine, Confirm, Fact, Mention, Option, StepLine, Text
from bot.diagnosis import catalogue
from bot.diagnosis.model import CONSENT_FIXES, Cause

SEVERITY = {
    Cause.CLIENT_CREDENTIALS_INVALID: "critical", Cause.BOT_MISCONFIGURED: "critical",
    Cause.REACTIVATION_REQUIRED: "critical", Cause.FORTNOX_UNAVAILABLE: "warning", Cause.RATE_LIMITED: "info",
}
SNOOZE_OPTIONS = (("1 hour", "1h"), ("4 hours", "4h"), ("1 day", "1d"))
PLATFORM_TENANTS_SHOWN = 50


@dataclass
class IncidentView:
    """Everything the card shows, read from the store by the caller."""

    incident: object                       # storage.models.Incident
    tenant_name: str = ""
    diagnosis: object | None = None        # storage.models.DiagnosisRecord
    events: list = field(default_factory=list)        # recent ExportEvent rows (failures)
    affected: list[tuple[str, str, bool]] = field(default_factory=list)  # platform: (tenant id, name, still failing)
    request: object | None = None          # the live ReactivationRequest, if any
    replay_enabled: bool = False
    channel_note: str = ""                 # e.g. why this alert is in ALERT_CHANNEL


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "?"


ACTOR_WORDS = {"bot": "the bot", "platform": "the integration platform", "": "the bot"}


def actor_parts(who: str | None) -> tuple:
    """A Slack user id becomes a mention; 'bot'/'platform' become words."""
    if who and who[:1] in ("U", "W") and who.isalnum():
        return (Mention(who),)
    return (ACTOR_WORDS.get(who or "", who),)


def build_incident_card(v: IncidentView) -> Card:
    inc = v.incident
    try:
        cause = Cause(inc.cause)
        entry = catalogue.entry(cause)
        title_cause = entry.title
    except ValueError:
        cause, entry, title_cause = None, None, "Diagnosing…"
    who = "All tenants" if inc.platform else (v.tenant_name or inc.tenant_id)
    title = f"{who}: {title_cause}"
    resolved = inc.status == "resolved"

    status = None
    if resolved:
        status = Text.of("✅ Resolved by ", *actor_parts(inc.resolved_by),
                         f" ({inc.resolution})" if inc.resolution else "", f" at {_when(inc.resolved_at)}")
    elif inc.status == "snoozed":
        status = Text.of("💤 Snoozed by ", *actor_parts(inc.snoozed_by), f" until {_when(inc.snoozed_until)}")
    elif v.request is not None:
        status = _request_status(v.request)

    facts = []
    if inc.platform:
        facts.append(Fact("Tenants affected", str(len(v.affected))))
    facts += [Fact("Failures", str(inc.failures)), Fact("Since", _when(inc.opened_at)),
              Fact("Last seen", _when(inc.last_seen_at))]
    if inc.kinds:
        facts.append(Fact("Export kinds", ", ".join(inc.kinds)))
    if entry is not None:
        facts.append(Fact("Who fixes it", entry.who_fixes))

    checks, steps = (), ()
    d = v.diagnosis
    if d is not None:
        checks = tuple(CheckLine(c.get("status", "skip"), c.get("id", ""), c.get("detail", "")) for c in d.checks)
        if not resolved:
            steps = tuple(StepLine(s.get("audience", "operator"), s.get("text", "")) for s in d.steps)

    if inc.platform:
        items_title = "Affected tenants"
        items = tuple(f"{name or tid} ({tid}){'' if failing else ' — recovered'}" for tid, name, failing in v.affected)
    else:
        items_title = "Failed exports"
        items = tuple(_event_line(e) for e in v.events)

    actions = _resolved_actions(v) if resolved else _actions(v, cause)
    context = [Text.of(f"Incident {inc.id}" + (f" · tenant {inc.tenant_id}" if inc.tenant_id else ""))]
    if v.channel_note:
        context.append(Text.of(v.channel_note))
    summary = inc.summary or (entry.summary if entry else "A diagnosis is running.")
    fallback = f"{title}" + (" (resolved)" if resolved else "")
    # A platform incident's lines are short tenant names: show more of them than of failed exports.
    extra = {"items_shown": PLATFORM_TENANTS_SHOWN} if inc.platform else {}
    return Card(title=title, fallback=fallback, severity="ok" if resolved else SEVERITY.get(cause, "warning"),
                status=status, summary=summary, facts=tuple(facts), checks=checks, steps=steps,
                items_title=items_title if items else "", items=items, actions=actions, context=tuple(context),
                extra=extra)


def _event_line(e) -> str:
    what = " ".join(x for x in (e.ref or "", f"({e.kind})" if e.kind else "") if x) or e.id
    detail = " ".join(str(x) for x in (e.fortnox_status, e.fortnox_code) if x)
    msg = f": {e.fortnox_message}" if e.fortnox_message else ""
    return f"{what} — {detail}{msg}" if detail or msg else what


def _request_status(req) -> Text | None:
    """Where the reactivation stands; its history lines are in the thread."""
    if req.status == "pending":
        return Text.of("⏳ Reactivation requested by ", *actor_parts(req.requested_by),
                       f" — awaiting approval by an admin until {_when(req.expires_at)}")
    if req.status == "approved":
        return Text.of("🔗 Reactivation approved by ", *actor_parts(req.decided_by),
                       " — consent link posted in the thread; waiting for the customer")
    if req.status == "consented":
        return Text.of("🔄 The customer consented; verifying the new connection…")
    if req.status == "denied":
        return Text.of("🚫 Reactivation denied by ", *actor_parts(req.decided_by), f" at {_when(req.decided_at)}")
    if req.status == "expired":
        what = "the consent link expired unused" if req.decided_by else "nobody decided in time"
        return Text.of(f"⌛ Reactivation request expired at {_when(req.finished_at or req.expires_at)} ({what})")
    if req.status == "declined":
        return Text.of(f"↩️ The customer cancelled the activation in Fortnox at {_when(req.finished_at)}")
    if req.status == "failed":
        return Text.of(f"⚠️ The reactivation at {_when(req.finished_at)} did not fix it — see the thread")
    return None


def _resolved_actions(v: IncidentView) -> tuple[Action, ...]:
    """History only, except the replay: after a fix is exactly when re-running the failed exports helps."""
    if v.replay_enabled and not v.incident.platform:
        return (Action("exports.replay", "Replay failed exports", v.incident.id),)
    return ()


def _actions(v: IncidentView, cause: Cause | None) -> tuple[Action, ...]:
    inc = v.incident
    actions = [Action("diagnose.rerun", "Re-run diagnosis", inc.id)]
    if not inc.platform and cause in CONSENT_FIXES:
        req = v.request
        if req is None or req.status not in ("pending", "approved"):
            actions.append(Action("reactivation.request", "Request reactivation link", inc.id, style="primary"))
        elif req.status == "pending":
            actions.append(Action("reactivation.approve", "Approve", req.id, style="primary",
                                  confirm=Confirm("Approve reactivation?", "A single-use consent link will be posted "
                                                  "in the thread for the customer's Fortnox admin.", "Approve")))
            actions.append(Action("reactivation.deny", "Deny", req.id, style="danger"))
    if v.replay_enabled and not inc.platform:
        actions.append(Action("exports.replay", "Replay failed exports", inc.id))
    actions.append(Action("incident.snooze", "Snooze…", inc.id,
                          options=tuple(Option(label, f"{inc.id}|{choice}") for label, choice in SNOOZE_OPTIONS)))
    actions.append(Action("incident.resolve", "Mark resolved", inc.id,
                          confirm=Confirm("Mark as resolved?", "The alert will say you resolved it.", "Resolve")))
    return tuple(actions)
