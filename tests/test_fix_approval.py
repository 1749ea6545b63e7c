"""Requests and their one decision, clicked in Slack: who may decide, decided once, expiry, `/fortnox reactivate`."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlmodel import select

from storage.models import ConsentState, ReactivationRequest
from storage.types import utcnow
from tests.support.consent import failing_incident, thread_links
from tests.support.seed import (ADMIN, ADMIN2, OPERATOR, OUTSIDER, TENANT_CHANNEL, export_event, post_event,
                                seed_tenant)
from tests.support.slack import action_ids, click, command, element, message_text, only_message


ALREADY = "Nothing was changed: this request was already"


def answers(slack, key: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(got := slack.responses(key)) >= count:
            return got
        time.sleep(0.01)
    raise AssertionError(f"no answer on {key} within {timeout}s")


def consent_count(store) -> int:
    with store.db.session() as s:
        return len(list(s.exec(select(ConsentState))))


def actions(store, tenant: str = "acme") -> list[str]:
    return [r.action for r in store.audit.for_tenant(tenant)]


def requested(server, store, world, slack, *, by: str = OPERATOR):
    """A failing tenant whose alert awaits approval: (alert message, request row)."""
    incident_id = failing_incident(server, store, world)
    _, key = click(server, slack, only_message(slack, TENANT_CHANNEL), "reactivation.request", user=by)
    answers(slack, key)
    server.drain()
    return only_message(slack, TENANT_CHANNEL), store.requests.latest_for_incident(incident_id)


def at_once(*calls) -> list:
    """Fire the calls from threads released together, as two people clicking in the same instant."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, fn):
        barrier.wait()
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


# --- who may decide --------------------------------------------------------------------------------
def test_non_admin_cannot_approve_or_deny(server, store, world, slack):
    alert, request = requested(server, store, world, slack)
    before = (actions(store), len(slack.calls_to("chat.update")), len(slack.calls_to("chat.postMessage")))
    for action_id in ("reactivation.approve", "reactivation.deny"):
        for user in (OUTSIDER, OPERATOR):
            _, key = click(server, slack, alert, action_id, user=user)
            text = answers(slack, key)[0]["text"]
            assert text.startswith("Only Fortnox bot admins") and text.endswith("Nothing was changed.")
    server.drain()
    assert store.requests.get(request.id).status == "pending" and consent_count(store) == 0
    assert (actions(store), len(slack.calls_to("chat.update")), len(slack.calls_to("chat.postMessage"))) == before


def test_admin_group_member_may_approve(server_factory, store, world, slack):
    slack.state.usergroups = {"S0ADMINS": [ADMIN2]}
    server = server_factory(FORTNOX_ADMINS="", FORTNOX_ADMIN_GROUP="S0ADMINS")
    alert, request = requested(server, store, world, slack)
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN)   # not in the group now
    assert answers(slack, key)[0]["text"].startswith("Only Fortnox bot admins")
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN2)
    assert answers(slack, key)[0]["text"].startswith("✅ Approved.")
    assert [c.args["usergroup"] for c in slack.calls_to("usergroups.users.list")] == ["S0ADMINS"]   # cached
    assert store.requests.get(request.id).decided_by == ADMIN2


def test_self_approval_is_refused(server, store, world, slack):
    alert, request = requested(server, store, world, slack, by=ADMIN)
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN)
    text = answers(slack, key)[0]["text"]
    assert text.startswith("You requested this reactivation yourself") and "Nothing was changed." in text
    server.drain()
    assert store.requests.get(request.id).status == "pending" and consent_count(store) == 0
    assert "approved" not in actions(store)


def test_self_approval_allowed_by_setting(server_factory, store, world, slack):
    server = server_factory(ALLOW_SELF_APPROVAL="true")
    alert, request = requested(server, store, world, slack, by=ADMIN)
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN)
    assert answers(slack, key)[0]["text"].startswith("✅ Approved.")
    server.drain()
    assert store.requests.get(request.id).status == "approved" and consent_count(store) == 1


def test_link_reaches_the_approver_when_the_thread_refuses_it(server, store, world, slack):
    alert, request = requested(server, store, world, slack)
    slack.state.fail("chat.postMessage", error="is_archived")
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN)
    reply = answers(slack, key)[0]
    assert reply["response_type"] == "ephemeral"
    assert reply["text"].startswith("✅ Approved, but the alert's thread could not take the link")
    assert "/auth?" in reply["text"] and "Godkänn &amp; aktivera" in reply["text"]
    server.drain()
    assert thread_links(slack, TENANT_CHANNEL, alert.ts) == [] and consent_count(store) == 1


# --- decided once ----------------------------------------------------------------------------------
def test_double_click_on_approve_issues_one_link(server, store, world, slack):
    alert, request = requested(server, store, world, slack)
    (_, k1), (_, k2) = at_once(lambda: click(server, slack, alert, "reactivation.approve", user=ADMIN),
                               lambda: click(server, slack, alert, "reactivation.approve", user=ADMIN))
    texts = sorted(answers(slack, k)[0]["text"] for k in (k1, k2))
    server.drain()
    row = store.requests.get(request.id)
    assert texts[0].startswith(f"{ALREADY} approved by <@{ADMIN}> at ")
    assert row.decided_at.strftime("%Y-%m-%d %H:%M UTC") in texts[0]
    assert texts[1].startswith("✅ Approved.")
    assert consent_count(store) == 1
    assert len(thread_links(slack, TENANT_CHANNEL, alert.ts)) == 1
    assert actions(store).count("approved") == 1 and actions(store).count("link_issued") == 1


def test_two_admins_approve_at_once(server_factory, store, world, slack):
    server = server_factory(FORTNOX_ADMINS=f"{ADMIN},{ADMIN2}")
    alert, request = requested(server, store, world, slack)
    (_, k1), (_, k2) = at_once(lambda: click(server, slack, alert, "reactivation.approve", user=ADMIN),
                               lambda: click(server, slack, alert, "reactivation.approve", user=ADMIN2))
    answers(slack, k1), answers(slack, k2)   # the handlers have run (they answer last)
    server.drain()
    winner = store.requests.get(request.id).decided_by
    loser_key = k2 if winner == ADMIN else k1
    assert winner in (ADMIN, ADMIN2)
    assert answers(slack, loser_key)[0]["text"].startswith(f"{ALREADY} approved by <@{winner}>")
    assert consent_count(store) == 1 and len(thread_links(slack, TENANT_CHANNEL, alert.ts)) == 1
    assert actions(store).count("approved") == 1


def test_approve_versus_deny_at_the_same_moment(server_factory, store, world, slack):
    server = server_factory(FORTNOX_ADMINS=f"{ADMIN},{ADMIN2}")
    alert, request = requested(server, store, world, slack)
    (_, k_approve), (_, k_deny) = at_once(
        lambda: click(server, slack, alert, "reactivation.approve", user=ADMIN),
        lambda: click(server, slack, alert, "reactivation.deny", user=ADMIN2))
    answers(slack, k_approve), answers(slack, k_deny)
    server.drain()
    row = store.requests.get(request.id)
    decided = [a for a in actions(store) if a in ("approved", "denied")]
    assert decided == [row.status] and row.status in ("approved", "denied")
    if row.status == "approved":
        assert answers(slack, k_deny)[0]["text"].startswith(f"{ALREADY} approved by <@{ADMIN}>")
        assert consent_count(store) == 1 and len(thread_links(slack, TENANT_CHANNEL, alert.ts)) == 1
    else:
        assert answers(slack, k_approve)[0]["text"].startswith(f"{ALREADY} denied by <@{ADMIN2}>")
        assert consent_count(store) == 0 and thread_links(slack, TENANT_CHANNEL, alert.ts) == []


def test_deny_closes_the_request_and_a_new_one_can_follow(server, store, world, slack):
    alert, request = requested(server, store, world, slack)
    _, key = click(server, slack, alert, "reactivation.deny", user=ADMIN)
    assert answers(slack, key)[0]["text"].startswith("Denied.")
    server.drain()
    alert = only_message(slack, TENANT_CHANNEL)
    assert f"Reactivation denied by <@{ADMIN}>" in message_text(alert)
    assert "reactivation.request" in action_ids(alert) and "reactivation.approve" not in action_ids(alert)
    thread = slack.thread(TENANT_CHANNEL, alert.ts)
    assert any(r.text.startswith(f"🚫 Reactivation denied by <@{ADMIN}>") for r in thread)
    _, key = click(server, slack, alert, "reactivation.request", user=OPERATOR)
    assert answers(slack, key)[0]["text"].startswith("🔑 Reactivation link requested")
    assert store.requests.latest_for_incident(request.incident_id).id != request.id


def test_one_live_request_per_tenant(server, store, world, slack):
    incident_id = failing_incident(server, store, world)
    alert = only_message(slack, TENANT_CHANNEL)
    (_, k1), (_, k2) = at_once(lambda: click(server, slack, alert, "reactivation.request", user=OPERATOR),
                               lambda: click(server, slack, alert, "reactivation.request", user=OUTSIDER))
    texts = sorted(answers(slack, k)[0]["text"] for k in (k1, k2))
    with store.db.session() as s:
        rows = list(s.exec(select(ReactivationRequest)))
    assert len(rows) == 1 and rows[0].incident_id == incident_id
    assert texts[0].startswith("A reactivation link for Acme AB was already requested by <@")
    assert texts[1].startswith("🔑 Reactivation link requested for Acme AB")
    assert actions(store).count("requested") == 1


# --- expiry ----------------------------------------------------------------------------------------
def _age(store, request_id: str) -> None:
    with store.db.session() as s:
        row = s.get(ReactivationRequest, request_id)
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)


def test_click_on_an_expired_request(server, store, world, slack):
    alert, request = requested(server, store, world, slack)
    _age(store, request.id)
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN)
    text = answers(slack, key)[0]["text"]
    assert text.startswith("This reactivation request expired at ") and "nobody decided" in text
    server.drain()
    row = store.requests.get(request.id)
    assert (row.status, row.live_key, row.decided_by) == ("expired", None, None) and consent_count(store) == 0
    expired = [r for r in store.audit.for_tenant("acme") if r.action == "expired"]
    assert len(expired) == 1 and expired[0].detail == {"clicked_by": ADMIN} and expired[0].permalink
    alert = only_message(slack, TENANT_CHANNEL)
    assert "Reactivation request expired at" in message_text(alert)
    assert "reactivation.request" in action_ids(alert)
    # A second click is told the same, and changes nothing more.
    _, key = click(server, slack, alert, "reactivation.deny", user=ADMIN, value=request.id)
    assert answers(slack, key)[0]["text"].startswith("This reactivation request expired at ")
    assert actions(store).count("expired") == 1


def test_background_sweep_expires_undecided_requests(server, store, world, slack):
    alert, request = requested(server, store, world, slack)
    assert server.call(server.bot.fix.reactivations.expire_due()) == 0
    _age(store, request.id)
    assert server.call(server.bot.fix.reactivations.expire_due()) == 1
    assert server.call(server.bot.fix.reactivations.expire_due()) == 0
    server.drain()
    assert store.requests.get(request.id).status == "expired"
    assert actions(store).count("expired") == 1
    assert "nobody decided in time" in message_text(only_message(slack, TENANT_CHANNEL))


def test_unused_consent_link_expires_and_frees_the_tenant(server, store, world, slack):
    alert, request = requested(server, store, world, slack)
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN)
    answers(slack, key)
    _age(store, request.id)
    assert server.call(server.bot.fix.reactivations.expire_due()) == 1
    server.drain()
    assert "the consent link expired unused" in message_text(only_message(slack, TENANT_CHANNEL))
    _, key = click(server, slack, only_message(slack, TENANT_CHANNEL), "reactivation.request", user=OPERATOR)
    assert answers(slack, key)[0]["text"].startswith("🔑 Reactivation link requested")


def test_approval_after_the_incident_resolved_issues_no_link(server, store, world, slack):
    alert, request = requested(server, store, world, slack)
    post_event(server.url, export_event("acme", type="export.succeeded"))   # exports work again
    server.drain()
    assert "reactivation.approve" not in action_ids(only_message(slack, TENANT_CHANNEL))
    _, key = click(server, slack, alert, "reactivation.approve", user=ADMIN)   # the button on an old render
    assert answers(slack, key)[0]["text"].startswith("The incident was resolved meanwhile (export.succeeded")
    row = store.requests.get(request.id)
    assert (row.status, row.live_key) == ("expired", None) and consent_count(store) == 0
    assert [r.detail for r in store.audit.for_tenant("acme") if r.action == "expired"] == \
        [{"why": "incident resolved", "clicked_by": ADMIN}]


# --- causes consent cannot fix ---------------------------------------------------------------------
def test_request_for_a_cause_consent_cannot_fix(server, store, world, slack):
    seed_tenant(store, world, "acme", company=555, channel=TENANT_CHANNEL, licences={"bokforing"})
    response = post_event(server.url, export_event("acme", status=400,
                          body={"ErrorInformation": {"error": 1, "message": "Det finns ingen aktiv licens för "
                                                                               "önskat scope", "code": 2001101}}))
    server.drain()
    incident_id = response.json()["incident"]
    assert store.incidents.get(incident_id).cause == "license_missing"
    alert = only_message(slack, TENANT_CHANNEL)
    assert "reactivation.request" not in action_ids(alert)
    _, key = click(server, slack, alert, "reactivation.request", user=OPERATOR, value=incident_id)   # an old button
    text = answers(slack, key)[0]["text"]
    assert text.startswith("A new consent cannot fix Acme AB's problem") and "license_missing" in text
    response, _ = command(server, slack, "reactivate acme", user=OPERATOR)
    assert response.json()["text"] == text
    assert store.requests.latest_for_incident(incident_id) is None and "requested" not in actions(store)


# --- /fortnox reactivate -----------------------------------------------------------------------------
def test_reactivate_command_with_an_open_incident(server, store, world, slack):
    incident_id = failing_incident(server, store, world)
    response, key = command(server, slack, "reactivate Acme AB", user=OPERATOR)
    assert response.status_code == 200
    assert response.json()["text"].startswith("🔑 Reactivation link requested for Acme AB")
    server.drain()
    assert store.requests.latest_for_incident(incident_id).requested_by == OPERATOR
    assert "reactivation.approve" in action_ids(only_message(slack, TENANT_CHANNEL))


def test_reactivate_command_without_an_incident_opens_one(server, store, world, slack):
    seed_tenant(store, world, "acme", company=555, channel=TENANT_CHANNEL)
    world.remove_integration(555)
    response, key = command(server, slack, "reactivate acme", user=OPERATOR)
    assert response.json()["text"].startswith("Checking Acme AB's Fortnox connection first")
    server.drain()
    assert answers(slack, key)[0]["text"].startswith("🔑 Reactivation link requested for Acme AB")
    inc = store.incidents.live_for_tenant("acme")
    assert inc.cause == "reactivation_required"
    alert = only_message(slack, TENANT_CHANNEL)
    assert element(alert, "reactivation.approve")["value"] == store.requests.latest_for_incident(inc.id).id


def test_reactivate_command_for_a_healthy_tenant(server, store, world, slack):
    seed_tenant(store, world, "acme", company=555, channel=TENANT_CHANNEL)
    response, key = command(server, slack, "reactivate acme", user=OPERATOR)
    server.drain()
    assert answers(slack, key)[0]["text"] == \
        "Acme AB's Fortnox connection works now (healthy): no reactivation is needed."
    assert store.incidents.live_for_tenant("acme") is None and slack.calls_to("chat.postMessage") == []


def test_reactivate_command_usage_and_unknown_tenant(server, store, world, slack):
    seed_tenant(store, world, "acme", company=555)
    response, _ = command(server, slack, "reactivate", user=OPERATOR)
    assert response.json()["text"] == "Which tenant? Usage: `/fortnox reactivate &lt;tenant&gt;`"
    response, _ = command(server, slack, "reactivate acem", user=OPERATOR)
    assert "Did you mean acme" in response.json()["text"]
