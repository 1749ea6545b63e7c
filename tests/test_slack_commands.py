"""`/fortnox` over loopback: signed form bodies in, the HTTP answer Slack receives and response_url posts out."""
from __future__ import annotations

import time

from bot.slack.commands import HELP
from tests.support.db import SQLITE_ONLY
from tests.support.seed import TENANT_CHANNEL, export_event, post_event, seed_tenant
from tests.support.slack import command, message_text, only_message, wait_until

OPERATOR = "U0OPERATOR"


def _answer(response) -> dict:
    """What Slack shows the user: Bolt's ack body (JSON)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_F_S1_slow_fortnox_fast_answer_then_the_result_through_response_url(server, store, world, slack):
    seed_tenant(store, world, "acme", company=601)
    world.latency = 4   # every Fortnox call takes 4 s

    started = time.monotonic()
    response, key = command(server, slack, "diagnose acme")
    took = time.monotonic() - started
    assert took < 2.0, f"the answer took {took:.2f} s; Slack gives up after 3 s"
    assert _answer(response) == {"response_type": "ephemeral",
                                 "text": "Diagnosing Acme AB… the result follows here in a moment."}
    assert slack.responses(key) == []   # the diagnosis is still running

    world.latency = 0   # the call in flight still takes its 4 s; the rest of the test need not
    (result,) = wait_until(lambda: slack.responses(key), timeout=20)
    assert result["response_type"] == "ephemeral" and result["replace_original"] is False
    assert result["text"] == "Diagnosis of Acme AB: No problem found"
    assert any(b["type"] == "header" and b["text"]["text"] == "Acme AB: No problem found" for b in result["blocks"])
    (call,) = slack.calls_to("response_url")
    assert call.key == key and call.status == 200
    assert slack.calls_to("chat.postMessage") == []   # healthy: no alert, no incident
    assert store.incidents.all() == []


@SQLITE_ONLY
def test_F_S1_a_diagnosis_that_raises_answers_with_an_ephemeral_error(server, store, world, slack, caplog):
    seed_tenant(store, world, "acme", company=602)

    async def broken(*args, **kwargs):
        raise RuntimeError("the store fell over")

    server.bot.runtime.diagnoser.run = broken
    response, key = command(server, slack, "diagnose acme")
    assert _answer(response)["text"].startswith("Diagnosing Acme AB…")
    (result,) = wait_until(lambda: slack.responses(key), timeout=10)
    assert result == {"response_type": "ephemeral", "replace_original": False,
                      "text": "The diagnosis of acme failed (RuntimeError). It was logged; please try again in a minute."}
    assert "the store fell over" not in str(result)   # details stay in the log
    assert any("slash diagnosis of acme failed" in r.getMessage() for r in caplog.records)


def test_a_lasting_problem_found_by_slash_command_opens_the_incident_and_alerts(server, store, world, slack):
    seed_tenant(store, world, "acme", company=603, channel=TENANT_CHANNEL)
    world.remove_integration(603)
    response, key = command(server, slack, "diagnose acme", user=OPERATOR)
    assert _answer(response)["response_type"] == "ephemeral"
    (result,) = wait_until(lambda: slack.responses(key), timeout=10)
    server.drain()
    (incident,) = store.incidents.all()
    assert incident.cause == "reactivation_required"
    assert result["text"] == "Diagnosis of Acme AB: Re-activation needed"
    assert f"Incident {incident.id} — the alert with buttons is in channel {TENANT_CHANNEL}" in message_text(result)
    alert = only_message(slack, TENANT_CHANNEL)
    assert "reactivation.request" in str(alert.blocks)
    (note,) = slack.thread(TENANT_CHANNEL, alert.ts)
    assert note.text == f"🔎 Diagnosed by <@{OPERATOR}> with /fortnox: reactivation_required"


def test_tenant_found_by_id_or_name_whatever_the_case_quotes_or_spaces(server, store, world, slack):
    seed_tenant(store, world, "acme", company=604)
    for text in ("diagnose acme", "diagnose ACME", "DIAGNOSE Acme", "diagnose acme ab", "diagnose “Acme AB” ",
                 "  diagnose   Acme\u00a0AB  ", "diagnose 'Acme AB'", "diagnose „Acme AB“"):
        response, _ = command(server, slack, text)
        assert _answer(response)["text"] == "Diagnosing Acme AB… the result follows here in a moment.", text


@SQLITE_ONLY
def test_near_misses_get_did_you_mean(server, store, world, slack):
    seed_tenant(store, world, "acme", company=605)
    seed_tenant(store, world, "beta", company=606, name="Beta Bygg AB")
    cases = {
        "diagnose acm": "No tenant called “acm” is registered. Did you mean acme (Acme AB)?",
        "diagnose beta bygg": "No tenant called “beta bygg” is registered. Did you mean beta (Beta Bygg AB)?",
        "diagnose zzzz": "No tenant called “zzzz” is registered. `fortnox-bot tenant list` shows the registered ones.",
        "diagnose <!channel>": "No tenant called “&lt;!channel&gt;” is registered. "
                               "`fortnox-bot tenant list` shows the registered ones.",
        "diagnose": "Which tenant? Usage: `/fortnox diagnose &lt;tenant&gt;`",
    }
    for text, expected in cases.items():
        response, _ = command(server, slack, text)
        assert _answer(response) == {"response_type": "ephemeral", "text": expected}, text
    server.drain()
    assert store.jobs.counts() == {}   # nothing was queued for a tenant that does not exist


def test_status_lists_open_incidents(server, store, world, slack):
    response, _ = command(server, slack, "status")
    assert _answer(response) == {"response_type": "ephemeral", "text": "No open incidents. 🎉"}

    seed_tenant(store, world, "acme", company=607)
    world.remove_integration(607)
    first = post_event(server.url, export_event("acme"))
    post_event(server.url, export_event("acme"))
    post_event(server.url, export_event("ghost"))
    server.drain()
    acme = store.incidents.get(first.json()["incident"])
    ghost = store.incidents.live_for_tenant("ghost")

    text = _answer(command(server, slack, "status")[0])["text"]
    lines = text.split("\n")
    assert lines[0] == "2 open incidents:"
    assert sorted(lines[1:]) == sorted([
        f"• Acme AB (acme): Re-activation needed — 2 failures, last {acme.last_seen_at:%Y-%m-%d %H:%M} UTC · {acme.id}",
        f"• ghost: Tenant not registered — 1 failure, last {ghost.last_seen_at:%Y-%m-%d %H:%M} UTC · {ghost.id}",
    ])


@SQLITE_ONLY
def test_help_empty_and_unknown_subcommands(server, slack):
    for text in ("help", "", "   ", "HELP"):
        assert _answer(command(server, slack, text)[0]) == {"response_type": "ephemeral", "text": HELP}, text
    unknown = _answer(command(server, slack, "frobnicate <@U123> now")[0])
    assert unknown["text"] == "Unknown command “frobnicate &lt;@U123&gt; now”.\n\n" + HELP


@SQLITE_ONLY
def test_a_command_with_a_bad_signature_is_refused(server, slack):
    from bot.slack_standin import requests as slack_requests
    from tests.support.slack import post_slack

    body, headers = slack_requests.slash_command("not-the-secret", text="status", response_url=slack.response_url("x"))
    response = post_slack(server, body, headers)
    assert response.status_code == 401
    stale, headers = slack_requests.slash_command(
        "8f742231b10e8888abcd99yyyzzz85a5", text="status", response_url=slack.response_url("x"),
        timestamp=int(time.time()) - 301)
    assert post_slack(server, stale, headers).status_code == 401


def test_people_asking_about_one_tenant_at_once_share_one_diagnosis_and_each_gets_the_answer(
        server_factory, store, world, slack):
    """Fortnox allows 25 calls per 5 s per tenant: ten operators typing /fortnox diagnose acme must not make
    ten diagnoses. The jobs wait (no worker yet) so that all three requests find the first one pending."""
    server = server_factory(FORTNOX_BOT_RUN_JOBS="false")
    seed_tenant(store, world, "acme", company=602)
    asked = [command(server, slack, "diagnose acme", user=user) for user in (OPERATOR, "U0SECOND", OPERATOR)]
    assert [_answer(r)["text"] for r, _ in asked] == ["Diagnosing Acme AB… the result follows here in a moment."] * 3
    (job,) = store.jobs.pending("diagnose")
    assert [r["user"] for r in job.payload["requests"]] == [OPERATOR, "U0SECOND", OPERATOR]

    async def start_worker():
        server.bot.worker.start()

    server.call(start_worker())
    server.drain()
    for _, key in asked:
        (answer,) = slack.responses(key)
        assert answer["text"] == "Diagnosis of Acme AB: No problem found"
    assert len([c for c in world.api_calls if c["path"].endswith("/companyinformation")]) == 1


def test_a_diagnose_job_queued_by_the_previous_version_still_answers_its_asker():
    from bot.slack.results import _askers

    old = {"tenant": "acme", "trigger": "slash", "user": OPERATOR, "response_url": "https://hooks.slack.test/r/1"}
    assert _askers(old) == [{"user": OPERATOR, "response_url": "https://hooks.slack.test/r/1"}]
    new = {"tenant": "acme", "requests": [{"user": "U1", "response_url": "u1"}, "junk", {"user": "U2"}]}
    assert _askers(new) == [{"user": "U1", "response_url": "u1"}, {"user": "U2"}]
