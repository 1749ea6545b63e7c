"""manifest.yml creates the Slack app CONTRACT.md describes and passes Slack's published schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / ".." / "shared" / "schemas" / "slack-manifest.schema.1.0.0.json"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


def test_manifest_validates_against_the_schema(manifest):
    if not SCHEMA_PATH.exists():
        pytest.skip(f"Slack manifest schema not found at {SCHEMA_PATH} (shared/schemas is outside this repo)")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(manifest)


def test_slash_command_and_request_urls(manifest):
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/fortnox"
    assert command["usage_hint"] == "diagnose <tenant> | status | reactivate <tenant> | help"
    assert command["should_escape"] is False
    assert command["url"] == "https://YOUR-HOST/slack/events"
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert interactivity["request_url"] == "https://YOUR-HOST/slack/events"
    # Slack retries unanswered events, so the app subscribes only to the one it handles (bot/slack/app.py).
    assert manifest["settings"]["event_subscriptions"] == {
        "request_url": "https://YOUR-HOST/slack/events", "bot_events": ["app_mention"]}


def test_bot_scopes_are_exactly_the_ones_needed(manifest):
    # *:history lets a retry after a crash find an alert already posted (bot/slack/posted.py).
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(
        ["commands", "chat:write", "chat:write.public", "usergroups:read", "channels:history", "groups:history",
         "app_mentions:read"]
    )
    assert "user" not in manifest["oauth_config"]["scopes"]


def test_app_identity_and_settings(manifest):
    assert manifest["display_information"]["name"] == "Fortnox Bot"
    assert manifest["display_information"]["background_color"] == "#1b5e3b"
    assert manifest["features"]["bot_user"] == {"display_name": "fortnox-bot", "always_online": True}
    assert manifest["features"]["app_home"] == {"home_tab_enabled": False, "messages_tab_enabled": False}
    settings = manifest["settings"]
    assert (settings["org_deploy_enabled"], settings["socket_mode_enabled"], settings["token_rotation_enabled"]) == (
        False,
        False,
        False,
    )
