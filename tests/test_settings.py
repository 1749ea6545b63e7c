"""Settings: a missing or malformed one stops start-up with one line naming it."""
from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings
from tests.conftest import bot_env


@pytest.mark.parametrize("name, value, says", [
    ("ALERT_CHANNEL", "general", "expected a Slack channel ID"),
    ("EXPORT_WEBHOOK_SECRET", "whsec_!!!", "not base64"),
    ("EXPORT_WEBHOOK_SECRET", "abc", "starting with whsec_"),
    ("ENCRYPTION_KEY", "abc", "not a valid Fernet key"),
    ("PORT", "notanumber", "expected a number"),
    ("SLACK_BOT_TOKEN", "wrong", "xoxb-"),
    ("FORTNOX_REDIRECT_URI", "not a url", "http(s) URL"),
    ("ALLOW_SELF_APPROVAL", "maybe", "true or false"),
    ("FORTNOX_BOT_RUN_JOBS", "sometimes", "true or false"),
    ("FORTNOX_BOT_HTTP_TIMEOUT_SECONDS", "nan", "finite number"),
    ("FORTNOX_BOT_HTTP_TIMEOUT_SECONDS", "inf", "finite number"),
    ("APPROVAL_TTL_HOURS", "NaN", "finite number"),
])
def test_malformed_setting_is_named(name, value, says, sqlite_url):
    env = bot_env(db_url=sqlite_url)
    env[name] = value
    with pytest.raises(SettingsError) as err:
        load_settings(env=env, need="serve")
    assert err.value.name == name and says in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_required_setting_is_named(sqlite_url):
    env = bot_env(db_url=sqlite_url)
    del env["ALERT_CHANNEL"]
    with pytest.raises(SettingsError, match="ALERT_CHANNEL: is required"):
        load_settings(env=env, need="serve")


def test_valid_settings_load(sqlite_url):
    s = load_settings(env=bot_env(db_url=sqlite_url, ALLOW_SELF_APPROVAL="true", PORT="8080"), need="serve")
    assert s.allow_self_approval is True and s.port == 8080 and s.slack_api_url.endswith("/")
    assert s.run_jobs is True   # one process does everything unless told otherwise
    assert load_settings(env=bot_env(db_url=sqlite_url, FORTNOX_BOT_RUN_JOBS="false"), need="serve").run_jobs is False


def test_worker_without_settings_says_which_one_is_missing(sqlite_url, monkeypatch, capsys):
    from bot.cli import main

    env = bot_env(db_url=sqlite_url)
    del env["SLACK_BOT_TOKEN"], env["SLACK_SIGNING_SECRET"], env["EXPORT_WEBHOOK_SECRET"]   # the last two: HTTP only
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "EXPORT_WEBHOOK_SECRET", *env):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FORTNOX_BOT_ENV_FILE", "/dev/null")
    assert main(["worker"]) != 0
    err = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_serve_on_a_taken_port_says_so_in_one_line(sqlite_url, monkeypatch, capsys):
    import socket

    from bot.cli import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        for name, value in bot_env(db_url=sqlite_url, HOST="127.0.0.1", PORT=str(port)).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("FORTNOX_BOT_ENV_FILE", "/dev/null")
        assert main(["serve"]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert err.strip() == f"fortnox-bot: cannot listen on 127.0.0.1:{port}: Address already in use (HOST, PORT)"


def test_a_worker_needs_no_http_secrets(sqlite_url):
    env = bot_env(db_url=sqlite_url)
    del env["SLACK_SIGNING_SECRET"], env["EXPORT_WEBHOOK_SECRET"]
    assert load_settings(env=env, need="worker").export_webhook_secret == ""
    with pytest.raises(SettingsError, match="EXPORT_WEBHOOK_SECRET: is required"):
        load_settings(env=env, need="serve")
