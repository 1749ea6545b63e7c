"""Events API deliveries (F-S2): Slack redelivers; the bot handles each event_id once, across restarts."""
from __future__ import annotations

import time

from bot.slack_standin import requests as slack_requests
from tests.support.db import SQLITE_ONLY
from tests.support.seed import SIGNING_SECRET
from tests.support.slack import post_slack, wait_until

CHANNEL = "C0SUPPORT"


def _mention(event_id: str, ts: str, **retry):
    event = {"type": "app_mention", "user": "U0OPERATOR", "text": "<@U_BOT> help", "ts": ts, "event_ts": ts,
             "channel": CHANNEL, "team": "T_TEST"}
    return slack_requests.event_callback(SIGNING_SECRET, event_id=event_id, event=event, **retry)


def _replies(slack, ts: str) -> list:
    return [c for c in slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == ts]


def test_F_S2_a_redelivered_event_is_handled_once_even_after_a_restart(server_factory, store, slack):
    server = server_factory()
    slack.state.latency = 0.3   # the first delivery's reply is still on its way when the retry arrives
    first_ts = f"{time.time():.6f}"
    answers = {}

    def deliver(name, **retry):
        answers[name] = post_slack(server, *_mention("Ev0FS2", first_ts, **retry))

    deliver("first")
    assert slack.calls_to("chat.postMessage") == []   # acked before the reply went out
    deliver("retry", retry_num=1, retry_reason="http_timeout")
    assert answers["first"].status_code == 200 and answers["retry"].status_code == 200
    assert answers["retry"].text == ""

    # A fresh event after both: once its reply is out, a second reply to the first would be too.
    other_ts = f"{time.time():.6f}"
    assert post_slack(server, *_mention("Ev0OTHER", other_ts)).status_code == 200
    wait_until(lambda: _replies(slack, other_ts), timeout=10)
    wait_until(lambda: _replies(slack, first_ts), timeout=10)
    assert len(_replies(slack, first_ts)) == 1
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert "/fortnox diagnose" in _replies(slack, first_ts)[0].args["text"]

    # Restart: a new process on the same store still remembers the event.
    server.stop()
    slack.state.latency = 0
    again = server_factory()
    late = post_slack(again, *_mention("Ev0FS2", first_ts, retry_num=2, retry_reason="http_timeout"))
    assert (late.status_code, late.text) == (200, "")
    third_ts = f"{time.time():.6f}"
    post_slack(again, *_mention("Ev0THIRD", third_ts))
    wait_until(lambda: _replies(slack, third_ts), timeout=10)
    assert len(_replies(slack, first_ts)) == 1
    assert len(slack.calls_to("chat.postMessage")) == 3


@SQLITE_ONLY
def test_events_with_a_bad_signature_are_refused(server, slack):
    body, headers = slack_requests.event_callback("wrong-secret", event_id="Ev0BAD",
                                                  event={"type": "app_mention", "text": "hi", "ts": "1.1",
                                                         "channel": CHANNEL, "user": "U0OPERATOR"})
    assert post_slack(server, body, headers).status_code == 401
    assert slack.calls_to("chat.postMessage") == []


@SQLITE_ONLY
def test_url_verification_is_answered(server):
    import json

    body = json.dumps({"token": "x", "challenge": "c-123", "type": "url_verification"}).encode()
    response = post_slack(server, body, slack_requests.sign(SIGNING_SECRET, body))
    assert (response.status_code, response.json()) == (200, {"challenge": "c-123"})
