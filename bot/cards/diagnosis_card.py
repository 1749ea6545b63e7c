"""A Card for one diagnosis (the answer to `/fortnox diagnose`)."""
from __future__ import annotations

from bot.cards.model import Card, CheckLine, StepLine, Text
from bot.diagnosis import catalogue
from bot.diagnosis.model import Diagnosis


def build_diagnosis_card(d: Diagnosis, tenant_name: str = "", incident_id: str | None = None,
                         channel: str | None = None) -> Card:
    entry = catalogue.entry(d.cause)
    who = tenant_name or d.tenant
    context = [Text.of(f"Cause: {d.cause}")]
    if incident_id:
        context.append(Text.of(f"Incident {incident_id}" + (f" — the alert with buttons is in channel {channel}" if channel else "")))
    return Card(
        title=f"{who}: {entry.title}",
        fallback=f"Diagnosis of {who}: {entry.title}",
        severity="ok" if d.resolved else "warning",
        summary=d.summary,
        checks=tuple(CheckLine(str(c.status), c.id, c.detail) for c in d.checks),
        steps=tuple(StepLine(str(s.audience), s.text) for s in d.steps),
        context=tuple(context),
    )
