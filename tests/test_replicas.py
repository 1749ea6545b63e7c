"""Two real `fortnox-bot serve` processes on one PostgreSQL: every promise holds once, not once per replica.

One sandbox and one Slack stand-in run in the test process; the replicas are subprocesses started with
the installed console script. Counts come from what the sandbox and the stand-in recorded.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter

from sqlmodel import select

from bot.runtime import build_runtime
from storage.models import ConsentState, DiagnosisRecord, Incident, Job
from tests.conftest import make_settings
from tests.support.replicas import (SCOPES_SHORT, concurrently, message_with_button, pg_store,  # noqa: F401
                                    replicas, seed_expired, wait_idle, wait_until)
from tests.support.seed import ADMIN, ADMIN2, OPERATOR, export_event, post_event, seed_tenant
from tests.support.slack import action_ids, click, command


def _rows(store, model, *where):
    with store.db.session() as s:
        return list(s.exec(select(model).where(*where)))


def _top_level_posts(slack, channel: str) -> list:
    return [c for c in slack.calls_to("chat.postMessage")
            if c.args.get("channel") == channel and not c.args.get("thread_ts") and c.error is None]


def _refreshes(world) -> Counter:
    return Counter(c["tenant_id"] for c in world.token_calls if c["grant_type"] == "refresh_token")


def test_F_S5_same_webhooks_to_both_replicas_one_incident_one_diagnosis_one_post(replicas, pg_store, world, slack):
    tenants = {f"t{i}": (9100 + i, f"C0T{i}") for i in range(4)}
    for tid, (company, channel) in tenants.items():
        # Expired token and a missing scope: each tenant needs one refresh, then gets one alert.
        seed_expired(pg_store, world, tid, company=company, channel=channel, scopes=SCOPES_SHORT)
    a, b = replicas.start(2)
    world.latency = 0.05   # so the burst's repeats arrive while the first is still being handled

    calls = []
    for tid in tenants:
        event = export_event(tid, event_id=f"evt-{tid}")
        for replica in (a, b, a, b, a, b):
            calls.append(lambda r=replica, e=event: (e["tenant"], post_event(r.url, e)))
    answers = concurrently(*calls)
    wait_idle(pg_store)

    for tid, (company, channel) in tenants.items():
        mine = [resp for t, resp in answers if t == tid]
        assert [r.status_code for r in mine] == [202] * 6
        assert sorted(r.json()["duplicate"] for r in mine) == [False] + [True] * 5
        assert len({r.json()["incident"] for r in mine}) == 1
        (incident,) = _rows(pg_store, Incident, Incident.tenant_id == tid)
        assert incident.cause == "scopes_missing" and incident.failures == 1
        assert len(_rows(pg_store, DiagnosisRecord, DiagnosisRecord.tenant_id == tid)) == 1
        (post,) = _top_level_posts(slack, channel)
        assert incident.message_ts is not None and incident.channel == channel
        assert _refreshes(world)[company] == 1
    assert len(slack.calls_to("chat.postMessage")) == len(tenants)
    # Each diagnose and Slack job ran to completion exactly once across both processes.
    jobs = _rows(pg_store, Job)
    assert Counter(j.kind for j in jobs if j.kind in ("diagnose", "slack.sync")) == {"diagnose": 4, "slack.sync": 4}
    assert all(j.status == "done" and j.attempts == 1 for j in jobs)


def test_F_D7_diagnoses_in_three_processes_refresh_each_tenant_once(replicas, pg_store, world, slack,
                                                                       postgres_url, sandbox):
    tenants = {f"r{i}": 9200 + i for i in range(3)}
    for tid, company in tenants.items():
        seed_expired(pg_store, world, tid, company=company)
    world.advance(3700)   # Fortnox agrees: every access token issued so far has expired
    a, b = replicas.start(2)
    world.latency = 0.3   # a refresh holds the lease long enough for the others to meet it

    # The test process is a third process with its own token manager on the same store.
    settings = make_settings(sandbox=sandbox, slack=slack, db_url=postgres_url)

    def local_diagnoses():
        async def run():
            runtime = build_runtime(settings, pg_store)
            try:
                return await asyncio.gather(*(runtime.diagnoser.run(t, trigger="cli") for t in tenants))
            finally:
                await runtime.aclose()
        return asyncio.run(run())

    calls = [local_diagnoses]
    for tid in tenants:
        calls += [lambda t=tid: command(a, slack, f"diagnose {t}"), lambda t=tid: command(b, slack, f"diagnose {t}")]
    local, *slashes = concurrently(*calls)
    wait_idle(pg_store)

    assert {str(d.cause) for d in local} <= {"token_refreshed", "healthy"}
    for response, key in slashes:
        assert response.status_code == 200, response.text
        (answer,) = wait_until(lambda k=key: slack.responses(k), what="the slash-command result")
        assert "reactivation" not in answer["text"].lower()
    for tid, company in tenants.items():
        assert _refreshes(world)[company] == 1, world.token_calls
        causes = {d.cause for d in _rows(pg_store, DiagnosisRecord, DiagnosisRecord.tenant_id == tid)}
        assert causes <= {"token_refreshed", "healthy"}, causes
        cred = pg_store.connections.load(tid)
        assert cred.state == "active" and cred.generation == 3 and cred.refresh_owner is None
        assert world.authenticate(f"Bearer {cred.access_token}", None).token is not None
    # Nothing healthy was alerted.
    assert slack.calls_to("chat.postMessage") == []


def test_approve_clicked_on_both_replicas_is_decided_once(replicas, pg_store, world, slack):
    seed_tenant(pg_store, world, "acme", company=9300, channel="C0ACME", scopes=SCOPES_SHORT)
    a, b = replicas.start(2, FORTNOX_ADMINS=f"{ADMIN},{ADMIN2}")
    assert post_event(a.url, export_event("acme")).status_code == 202
    wait_idle(pg_store)
    (incident,) = _rows(pg_store, Incident, Incident.tenant_id == "acme")
    alert = slack.messages[(incident.channel, incident.message_ts)]
    assert "reactivation.request" in action_ids(alert)

    response, key = click(b, slack, alert, "reactivation.request", user=OPERATOR)
    assert response.status_code == 200
    answer = wait_until(lambda: slack.responses(key), what="the request answer")[0]["text"]
    assert answer.startswith("🔑 Reactivation link requested"), answer
    alert = wait_until(lambda: message_with_button(slack, incident, "reactivation.approve"), what="the approve button")

    # Not an admin: refused on either replica, and nothing changes.
    _, k0 = click(a, slack, alert, "reactivation.approve", user=OPERATOR)
    refused = wait_until(lambda: slack.responses(k0), what="the refusal")[0]["text"]
    assert refused.startswith("Only Fortnox bot admins") and "Nothing was changed" in refused
    (r1, k1), (r2, k2) = concurrently(lambda: click(a, slack, alert, "reactivation.approve", user=ADMIN),
                                      lambda: click(b, slack, alert, "reactivation.approve", user=ADMIN2))
    assert (r1.status_code, r2.status_code) == (200, 200)
    wait_idle(pg_store)
    answers = [wait_until(lambda k=k: slack.responses(k), what="the approval answer")[0]["text"] for k in (k1, k2)]
    assert sum(t.startswith("✅ Approved") for t in answers) == 1, answers
    assert sum("already approved" in t for t in answers) == 1, answers
    wait_idle(pg_store)   # the handlers ran after their acks: their alert re-render may be queued only now

    approvals = [e for e in pg_store.audit.for_tenant("acme") if e.action == "approved"]
    assert len(approvals) == 1 and approvals[0].actor in (ADMIN, ADMIN2)
    assert len(_rows(pg_store, ConsentState, ConsentState.tenant_id == "acme")) == 1
    replies = slack.thread(incident.channel, incident.message_ts)
    assert sum("/auth?" in (m.text or "") for m in replies) == 1
    alert = slack.messages[(incident.channel, incident.message_ts)]
    assert "reactivation.approve" not in action_ids(alert)


def test_slack_429_and_5xx_across_replicas_lose_and_double_nothing(replicas, pg_store, world, slack):
    tenants = {f"s{i}": (9400 + i, f"C0S{i}") for i in range(3)}
    for tid, (company, channel) in tenants.items():
        seed_tenant(pg_store, world, tid, company=company, channel=channel, scopes=SCOPES_SHORT)
    # Slack refuses the first posts: a 429 the SDK waits out, then 503s that outlast its own retries.
    slack.state.fail("chat.postMessage", status=429, retry_after=1, times=1)
    slack.state.fail("chat.postMessage", status=503, times=3)
    a, b = replicas.start(2)

    answers = concurrently(*(lambda t=tid, r=r: post_event(r.url, export_event(t, event_id=f"evt-{t}"))
                             for tid in tenants for r in (a, b)))
    assert sorted(r.json()["duplicate"] for r in answers) == [False] * 3 + [True] * 3
    wait_idle(pg_store, timeout=60)

    refused = [c for c in slack.calls_to("chat.postMessage") if c.error is not None]
    assert [c.status for c in refused] == [429, 503, 503, 503]
    for tid, (_, channel) in tenants.items():
        (incident,) = _rows(pg_store, Incident, Incident.tenant_id == tid)
        (post,) = _top_level_posts(slack, channel)
        assert incident.message_ts == slack.messages[(channel, incident.message_ts)].ts


def test_slack_timeout_after_slack_took_the_post_does_not_post_twice(replicas, pg_store, world, slack):
    seed_tenant(pg_store, world, "acme", company=9450, channel="C0ACME", scopes=SCOPES_SHORT)
    a, b = replicas.start(2, FORTNOX_BOT_HTTP_TIMEOUT_SECONDS="1")
    slack.state.latency = 2.0   # longer than the bot's 1 s timeout: Slack posts, the answer never arrives
    assert post_event(a.url, export_event("acme", event_id="evt-1")).status_code == 202
    wait_until(lambda: slack.calls_to("chat.postMessage"), what="the first post")
    slack.state.latency = 0.0
    wait_idle(pg_store, timeout=60)

    (incident,) = _rows(pg_store, Incident, Incident.tenant_id == "acme")
    tops = [m for m in slack.messages.values() if m.channel == "C0ACME" and m.thread_ts is None]
    assert [m.ts for m in tops] == [incident.message_ts]
    assert len(slack.calls_to("chat.postMessage")) == 1
    # The retry found the post through its metadata, then brought it up to date.
    assert slack.calls_to("conversations.history")[0].args["include_all_metadata"] in ("true", "1", True)
    assert [c.args["ts"] for c in slack.calls_to("chat.update")] == [incident.message_ts]


def _rank(message_blocks_text: str) -> int:
    return 2 if "✅ Resolved" in message_blocks_text else 1 if "💤 Snoozed" in message_blocks_text else 0


def test_state_changes_in_a_row_on_two_replicas_update_the_message_in_order(replicas, pg_store, world, slack):
    import json

    seed_tenant(pg_store, world, "acme", company=9460, channel="C0ACME", scopes=SCOPES_SHORT)
    a, b = replicas.start(2)
    assert post_event(a.url, export_event("acme", event_id="evt-1")).status_code == 202
    wait_idle(pg_store)
    (incident,) = _rows(pg_store, Incident, Incident.tenant_id == "acme")
    alert = slack.messages[(incident.channel, incident.message_ts)]

    # Slack makes the first update wait (429, Retry-After 1 s) while the next changes pile up behind it.
    slack.state.fail("chat.update", status=429, retry_after=1, times=1)
    assert post_event(b.url, export_event("acme", event_id="evt-2", ref="INV-2")).status_code == 202
    snoozed, _ = click(a, slack, alert, "incident.snooze", user=OPERATOR, option=f"{incident.id}|1h")
    wait_until(lambda: _rows(pg_store, Incident, Incident.id == incident.id)[0].status == "snoozed",
               what="the snooze")   # Bolt answers before its handler runs: keep the two clicks in order
    resolved, _ = click(b, slack, alert, "incident.resolve", user=ADMIN)
    assert (snoozed.status_code, resolved.status_code) == (200, 200)
    wait_until(lambda: _rows(pg_store, Incident, Incident.id == incident.id)[0].status == "resolved",
               what="the incident to resolve")
    wait_idle(pg_store, timeout=60)

    updates = [c for c in slack.calls_to("chat.update") if c.error is None]
    ranks = [_rank(json.dumps(c.args.get("blocks"), ensure_ascii=False)) for c in updates]
    assert ranks == sorted(ranks) and ranks[-1] == 2, ranks     # never back to an older state
    final = slack.messages[(incident.channel, incident.message_ts)]
    assert "✅ Resolved by" in json.dumps(final.blocks, ensure_ascii=False)
    notes = [m.text for m in slack.thread(incident.channel, incident.message_ts)]
    assert [n.split(" by ")[0] for n in notes if "Snoozed" in n or "resolved" in n] == ["💤 Snoozed", "✅ Marked resolved"]


def test_a_job_outliving_its_lease_is_not_taken_over_from_a_live_replica(replicas, pg_store, world, slack):
    seed_tenant(pg_store, world, "slow", company=9470, channel="C0SLOW", scopes=SCOPES_SHORT)
    a, b = replicas.start(2, FORTNOX_BOT_JOB_LEASE_SECONDS="1.5")
    world.latency = 1.0   # the diagnosis takes about 2 s: longer than the lease, renewed while it runs
    assert post_event(a.url, export_event("slow", event_id="evt-1")).status_code == 202
    wait_idle(pg_store)

    assert len(_rows(pg_store, DiagnosisRecord, DiagnosisRecord.tenant_id == "slow")) == 1
    (job,) = _rows(pg_store, Job, Job.kind == "diagnose")
    assert (job.status, job.attempts) == ("done", 1)
    assert len(_top_level_posts(slack, "C0SLOW")) == 1


def test_web_only_replicas_leave_the_jobs_to_a_worker_process(replicas, pg_store, world, slack):
    """FORTNOX_BOT_RUN_JOBS=false: `serve` stores and acknowledges; `fortnox-bot worker` diagnoses and posts."""
    tenants = {f"w{i}": (9300 + i, f"C0W{i}") for i in range(3)}
    for tid, (company, channel) in tenants.items():
        seed_expired(pg_store, world, tid, company=company, channel=channel, scopes=SCOPES_SHORT)
    a, b = replicas.start(2, FORTNOX_BOT_RUN_JOBS="false")
    answers = concurrently(*(lambda r=r, t=t: post_event(r.url, export_event(t, event_id=f"evt-{t}-{r.name}"))
                             for t in tenants for r in (a, b)))
    assert [r.status_code for r in answers] == [202] * 6
    assert len({r.json()["incident"] for r in answers}) == 3   # one incident per tenant across both replicas
    time.sleep(1.0)   # the web replicas' pollers would have started by now, had they any
    assert Counter(j.kind for j in pg_store.jobs.pending()) == {"diagnose": 3}
    assert slack.calls_to("chat.postMessage") == [] and world.token_calls == []

    (worker,) = replicas.start(1, role="worker", FORTNOX_BOT_RUN_JOBS="false")   # the shared env says false
    wait_idle(pg_store)
    for tid, (company, channel) in tenants.items():
        (incident,) = _rows(pg_store, Incident, Incident.tenant_id == tid)
        assert (incident.cause, incident.failures) == ("scopes_missing", 2)
        (post,) = _top_level_posts(slack, channel)
        assert incident.message_ts is not None and incident.channel == channel
        assert _refreshes(world)[company] == 1
    assert "worker running (16 jobs at a time" in worker.log

    # A /fortnox diagnose answered by a web-only replica: its result is posted by the worker process.
    (response, key) = command(a, slack, "diagnose w0")
    assert response.status_code == 200 and response.json()["text"].startswith("Diagnosing")
    wait_idle(pg_store)
    (answer,) = slack.responses(key)
    assert answer["text"] == "Diagnosis of Acme AB: Permissions (scopes) missing"
    worker.stop()
    assert worker.proc.returncode == 0
