"""Buttons on the alert, clicked as Slack sends them (signed block_actions): re-run, snooze, resolve."""
from __future__ import annotations

import threading

from sqlmodel import delete

from storage.models import Incident
from tests.support.db import SQLITE_ONLY
from tests.support.seed import ADMIN, ADMIN2, OPERATOR, TENANT_CHANNEL, export_event, post_event, seed_tenant
from tests.support.slack import action_ids, click, element, message_text, only_message, wait_until

COMPANY = 701


def _alert(server, store, world, slack, *, licences=None):
    """acme's alert in its own channel: no invoice licence (license_missing) unless `licences` says otherwise."""
    seed_tenant(store, world, "acme", company=COMPANY, channel=TENANT_CHANNEL,
                licences={"lon"} if licences is None else licences)
    response = post_event(server.url, export_event("acme"))
    server.drain()
    incident = store.incidents.get(response.json()["incident"])
    return incident, only_message(slack, TENANT_CHANNEL)


def _ephemeral(slack, key: str) -> str:
    (answer,) = wait_until(lambda: slack.responses(key), timeout=10)
    assert answer["response_type"] == "ephemeral" and answer.get("replace_original") is False
    return answer["text"]


def _thread(slack, message) -> list[str]:
    return [m.text for m in slack.thread(message.channel, message.ts)]


def test_rerun_rediagnoses_and_posts_the_result_in_the_thread(server, store, world, slack):
    incident, alert = _alert(server, store, world, slack)
    assert incident.cause == "license_missing"

    response, key = click(server, slack, alert, "diagnose.rerun", user=OPERATOR)
    assert (response.status_code, response.text) == (200, "")   # acked at once; the answer follows
    assert _ephemeral(slack, key) == "Re-running the diagnosis of acme… the result follows in the alert's thread."
    server.drain()
    assert _thread(slack, alert) == [f"🔎 Re-diagnosis by <@{OPERATOR}>: cause license_missing"]
    assert store.diagnoses.latest("acme").trigger == "rerun"
    assert len(slack.calls_to("chat.postMessage")) == 2   # the alert and the thread reply, nothing else

    # The customer bought the licence: the next re-run finds it healthy and resolves the alert in place.
    world.set_licences(COMPANY, None)
    _, key = click(server, slack, only_message(slack, TENANT_CHANNEL), "diagnose.rerun", user=ADMIN)
    _ephemeral(slack, key)
    server.drain()
    assert _thread(slack, alert)[-1] == f"🔎 Re-diagnosis by <@{ADMIN}>: cause healthy — resolved"
    inc = store.incidents.get(incident.id)
    assert (inc.status, inc.resolved_by, inc.resolution) == ("resolved", "bot", "a healthy re-diagnosis")
    text = message_text(only_message(slack, TENANT_CHANNEL))
    assert f"✅ Resolved by the bot (a healthy re-diagnosis) at {inc.resolved_at:%Y-%m-%d %H:%M} UTC" in text
    assert action_ids(only_message(slack, TENANT_CHANNEL)) == []
    resolved = [a for a in store.audit.for_tenant("acme") if a.action == "resolved"]
    assert [(a.actor, a.detail["by"]) for a in resolved] == [(ADMIN, "a healthy re-diagnosis")]


def test_snooze_shows_who_and_until_and_keeps_repeats_quiet_until_it_gets_worse(server, store, world, slack):
    incident, alert = _alert(server, store, world, slack)
    options = [o["value"] for o in element(alert, "incident.snooze")["options"]]
    assert options == [f"{incident.id}|1h", f"{incident.id}|4h", f"{incident.id}|1d"]

    response, key = click(server, slack, alert, "incident.snooze", user=OPERATOR, option=f"{incident.id}|1h")
    assert response.status_code == 200
    wait_until(lambda: _thread(slack, alert))   # the listener runs after the ack
    server.drain()
    inc = store.incidents.get(incident.id)
    until = f"{inc.snoozed_until:%Y-%m-%d %H:%M} UTC"
    assert (inc.status, inc.snoozed_by) == ("snoozed", OPERATOR)
    snoozed = only_message(slack, TENANT_CHANNEL)
    assert f"💤 Snoozed by <@{OPERATOR}> until {until}" in message_text(snoozed)
    assert _thread(slack, alert) == [f"💤 Snoozed by <@{OPERATOR}> until {until}"]
    assert slack.responses(key) == []   # the message itself says it; no extra ephemeral
    calls = len(slack.calls)

    # Repeats of the same problem while snoozed: recorded, but no post, no update, no thread noise.
    for _ in range(3):
        assert post_event(server.url, export_event("acme")).json()["incident"] == incident.id
    server.drain()
    assert store.incidents.get(incident.id).failures == 4
    assert [c.method for c in slack.calls[calls:]] == []

    # The cause gets worse (the customer removed the integration): the snooze ends, loudly.
    world.remove_integration(COMPANY)
    post_event(server.url, export_event("acme"))
    server.drain()
    inc = store.incidents.get(incident.id)
    assert (inc.status, inc.cause) == ("open", "reactivation_required")
    assert len(slack.calls_to("chat.postMessage")) == 3   # alert, snooze note, wake-up note
    assert _thread(slack, alert)[-1] == "⏰ Snooze ended early: the cause got worse (license_missing → reactivation_required)"
    updated = only_message(slack, TENANT_CHANNEL)
    assert "Snoozed" not in message_text(updated)
    assert "incident.snooze" in action_ids(updated)


def test_resolve_says_who_and_removes_the_buttons_once(server, store, world, slack):
    incident, alert = _alert(server, store, world, slack)
    assert action_ids(alert) == ["diagnose.rerun", "incident.snooze", "incident.resolve"]

    response, key = click(server, slack, alert, "incident.resolve", user=ADMIN)
    assert response.status_code == 200
    wait_until(lambda: _thread(slack, alert))   # the listener runs after the ack
    server.drain()
    inc = store.incidents.get(incident.id)
    when = f"{inc.resolved_at:%Y-%m-%d %H:%M} UTC"
    resolved = only_message(slack, TENANT_CHANNEL)
    assert f"✅ Resolved by <@{ADMIN}> (marked resolved in Slack) at {when}" in message_text(resolved)
    assert action_ids(resolved) == []
    assert resolved.text == "Acme AB: Fortnox licence missing (resolved)"
    assert _thread(slack, alert) == [f"✅ Marked resolved by <@{ADMIN}>"]

    # Someone else still had the old buttons on screen.
    _, key2 = click(server, slack, alert, "incident.resolve", user=ADMIN2)
    assert _ephemeral(slack, key2) == f"Incident {incident.id} was already resolved by <@{ADMIN}> at {when}."
    _, key3 = click(server, slack, alert, "incident.snooze", user=ADMIN2, option=f"{incident.id}|4h")
    assert _ephemeral(slack, key3) == f"Incident {incident.id} was already resolved by <@{ADMIN}> at {when}."
    server.drain()
    assert [a.actor for a in store.audit.for_tenant("acme") if a.action == "resolved"] == [ADMIN]
    assert len(_thread(slack, alert)) == 1


def test_two_people_resolving_at_once_resolve_it_once(server, store, world, slack):
    incident, alert = _alert(server, store, world, slack)
    start = threading.Barrier(2)
    keys = {}

    def resolve(user):
        start.wait()
        keys[user] = click(server, slack, alert, "incident.resolve", user=user)[1]

    threads = [threading.Thread(target=resolve, args=(u,)) for u in (ADMIN, ADMIN2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    wait_until(lambda: _thread(slack, alert) and any(slack.responses(k) for k in keys.values()))
    server.drain()
    winners = [a.actor for a in store.audit.for_tenant("acme") if a.action == "resolved"]
    assert len(winners) == 1 and winners[0] in (ADMIN, ADMIN2)
    loser = ADMIN2 if winners[0] == ADMIN else ADMIN
    assert _ephemeral(slack, keys[loser]).startswith(f"Incident {incident.id} was already resolved by <@{winners[0]}>")
    assert slack.responses(keys[winners[0]]) == []
    assert _thread(slack, alert) == [f"✅ Marked resolved by <@{winners[0]}>"]


@SQLITE_ONLY
def test_unknown_action_and_a_deleted_incident_answer_ephemerally(server, store, world, slack):
    incident, alert = _alert(server, store, world, slack)
    response, key = click(server, slack, alert, "incident.escalate", user=OPERATOR, value=incident.id)
    assert response.status_code == 200
    assert _ephemeral(slack, key) == "This button is no longer supported."

    with store.db.session() as s:
        s.exec(delete(Incident).where(Incident.id == incident.id))
    for action_id, option in (("diagnose.rerun", None), ("incident.resolve", None),
                              ("incident.snooze", f"{incident.id}|1h")):
        _, key = click(server, slack, alert, action_id, user=OPERATOR, option=option)
        assert _ephemeral(slack, key) == f"Incident {incident.id} no longer exists.", action_id
    server.drain()
    assert len(slack.calls_to("chat.postMessage")) == 1   # only the original alert
    assert store.jobs.counts().get("failed", 0) == 0


@SQLITE_ONLY
def test_a_snooze_choice_that_does_not_exist_changes_nothing(server, store, world, slack):
    incident, alert = _alert(server, store, world, slack)
    _, key = click(server, slack, alert, "incident.snooze", user=OPERATOR, option=f"{incident.id}|1y")
    assert _ephemeral(slack, key) == "That snooze choice is not known; pick one from the menu."
    assert store.incidents.get(incident.id).status == "open"


@SQLITE_ONLY
def test_a_click_with_a_bad_signature_changes_nothing(server, store, world, slack):
    from bot.slack_standin import requests as slack_requests
    from tests.support.slack import post_slack

    incident, alert = _alert(server, store, world, slack)
    body, headers = slack_requests.block_action(
        "wrong-secret", action_id="incident.resolve", value=incident.id, user_id=ADMIN, channel_id=alert.channel,
        message_ts=alert.ts, response_url=slack.response_url("bad"), message=alert)
    assert post_slack(server, body, headers).status_code == 401
    server.drain()
    assert store.incidents.get(incident.id).status == "open"
