"""Delivery that loses nothing: refused channels, rate limits, Slack outages, and the order of updates."""
from __future__ import annotations

import pytest
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from tests.support.db import SQLITE_ONLY
from tests.support.seed import ADMIN, ALERT_CHANNEL, OPERATOR, TENANT_CHANNEL, export_event, post_event, seed_tenant
from tests.support.slack import click, message_text, mrkdwn_texts, only_message, wait_until

COMPANY = 1001


def _failing_tenant(store, world, **kw):
    seed_tenant(store, world, "acme", company=COMPANY, channel=TENANT_CHANNEL, licences={"lon"}, **kw)


def _ok_posts(slack) -> list:
    return [c for c in slack.calls_to("chat.postMessage") if c.error is None and not c.args.get("thread_ts")]


def _fast_retries(server) -> None:
    """Production waits seconds to minutes between attempts; the test needs the same steps, only quicker."""
    server.bot.worker.backoff_base = 0.02
    for handler in server.bot.slack.retry_handlers:
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0.01)


@SQLITE_ONLY
@pytest.mark.parametrize("error", ["not_in_channel", "channel_not_found", "is_archived"])
def test_a_refused_tenant_channel_falls_back_to_alert_channel_and_says_why(server, store, world, slack, error):
    _failing_tenant(store, world)
    slack.state.channel_error(TENANT_CHANNEL, error)
    response = post_event(server.url, export_event("acme"))
    server.drain()

    refused, posted = slack.calls_to("chat.postMessage")
    assert (refused.args["channel"], refused.error) == (TENANT_CHANNEL, error)
    assert (posted.args["channel"], posted.error) == (ALERT_CHANNEL, None)
    alert = only_message(slack)
    assert alert.channel == ALERT_CHANNEL
    note = f"Posted here because the tenant's channel {TENANT_CHANNEL} answered {error}"
    assert any(t.startswith(note) for t in mrkdwn_texts(alert.blocks))
    inc = store.incidents.get(response.json()["incident"])
    assert (inc.channel, inc.message_ts) == (ALERT_CHANNEL, alert.ts)

    # The note stays when the alert is updated, and the thread is where the alert is.
    post_event(server.url, export_event("acme", ref="INV-2"))
    server.drain()
    updated = only_message(slack)
    assert updated.updates >= 1 and "INV-2" in message_text(updated)
    assert any(t.startswith(note) for t in mrkdwn_texts(updated.blocks))
    assert len(slack.calls_to("chat.postMessage")) == 2   # no new attempt at the refusing channel


def test_slack_rate_limit_is_waited_out_and_the_alert_arrives_once(server, store, world, slack):
    _failing_tenant(store, world)
    # Three 429s: slack_sdk's handler waits out two Retry-Afters, the third becomes a job retry.
    slack.state.fail("chat.postMessage", status=429, retry_after=1, times=3)
    post_event(server.url, export_event("acme"))
    server.drain()
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses == [429, 429, 429, 200]
    assert len(_ok_posts(slack)) == 1 and len(slack.messages) == 1
    (job,) = [j for j in _jobs(store) if j.kind == "slack.sync"]
    assert (job.status, job.attempts) == ("done", 2)
    assert job.last_error == "Slack rate limit"


def test_slack_server_errors_are_retried_and_the_alert_arrives_once(server, store, world, slack):
    _fast_retries(server)
    _failing_tenant(store, world)
    slack.state.fail("chat.postMessage", status=500, times=2)
    slack.state.fail("chat.postMessage", status=503, times=2)
    post_event(server.url, export_event("acme"))
    server.drain()
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [500, 500, 503, 503, 200]
    assert len(_ok_posts(slack)) == 1 and len(slack.messages) == 1
    assert store.jobs.counts().get("failed", 0) == 0


def test_while_slack_is_down_the_alert_waits_in_the_store_and_goes_out_when_it_is_back(server, store, world, slack):
    _fast_retries(server)
    _failing_tenant(store, world)
    slack.state.fail("chat.postMessage", status=503, times=20)
    response = post_event(server.url, export_event("acme"))
    incident_id = response.json()["incident"]

    # Down: attempts keep failing, and the alert is a pending job in the store, not lost.
    wait_until(lambda: len(slack.calls_to("chat.postMessage")) >= 9, timeout=20)
    pending = [j for j in store.jobs.pending("slack.sync")]
    assert [j.payload for j in pending] == [{"incident": incident_id}]
    assert pending[0].attempts >= 3 and pending[0].last_error.startswith("Slack error 503")
    assert slack.messages == {}

    # Back (the 21st call succeeds): it goes out exactly once.
    server.drain(30)
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses == [503] * 20 + [200]
    assert len(slack.messages) == 1
    assert store.incidents.get(incident_id).message_ts == only_message(slack).ts
    assert store.jobs.counts().get("failed", 0) == 0


def test_updates_to_one_message_keep_their_order(server, store, world, slack):
    _fast_retries(server)
    _failing_tenant(store, world)
    response = post_event(server.url, export_event("acme"))
    server.drain()
    incident_id = response.json()["incident"]
    alert = only_message(slack)

    # Slack slows down and refuses the next updates for a while; meanwhile people act on the alert.
    slack.state.fail("chat.update", status=429, retry_after=1, times=3)
    slack.state.latency = 0.1
    click(server, slack, alert, "incident.snooze", user=OPERATOR, option=f"{incident_id}|1h")
    wait_until(lambda: store.incidents.get(incident_id).status == "snoozed")
    click(server, slack, alert, "incident.resolve", user=ADMIN)
    wait_until(lambda: store.incidents.get(incident_id).status == "resolved")
    server.drain(30)
    slack.state.latency = 0

    final = only_message(slack)
    assert f"✅ Resolved by <@{ADMIN}>" in message_text(final)
    versions = [message_text(v) for v in final.history] + [message_text(final)]
    resolved_from = next(i for i, t in enumerate(versions) if "Resolved by" in t)
    assert all("Resolved by" in t for t in versions[resolved_from:])   # never back to an older state
    assert all("Snoozed by" not in t for t in versions[resolved_from:])
    thread = [m.text for m in slack.thread(alert.channel, alert.ts)]
    assert thread[0].startswith(f"💤 Snoozed by <@{OPERATOR}>") and thread[1] == f"✅ Marked resolved by <@{ADMIN}>"
    assert store.jobs.counts().get("failed", 0) == 0


def _jobs(store):
    from sqlmodel import select

    from storage.models import Job

    with store.db.session() as s:
        return list(s.exec(select(Job).order_by(Job.id)))
