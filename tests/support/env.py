"""The environment of a bot under test, as CONTRACT.md names its settings: for tests and the bench alike."""
from __future__ import annotations

from cryptography.fernet import Fernet

from tests.support.seed import ADMIN, ALERT_CHANNEL, CLIENT_ID, CLIENT_SECRET, SIGNING_SECRET, WEBHOOK_SECRET

ENCRYPTION_KEY = Fernet.generate_key().decode()   # one per run: nothing encrypted outlives it


def bot_env(*, sandbox=None, slack=None, db_url: str, bot_url: str = "http://127.0.0.1:9", **over) -> dict:
    """Settings for a bot on `db_url` talking to the sandbox and the Slack stand-in (both optional); `over`
    adds or replaces settings by name (None leaves one out)."""
    env = {
        "DATABASE_URL": db_url,
        "ENCRYPTION_KEY": ENCRYPTION_KEY,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "ALERT_CHANNEL": ALERT_CHANNEL,
        "FORTNOX_ADMINS": ADMIN,
        "FORTNOX_CLIENT_ID": CLIENT_ID,
        "FORTNOX_CLIENT_SECRET": CLIENT_SECRET,
        "FORTNOX_REDIRECT_URI": f"{bot_url}/oauth/fortnox/callback",
        "EXPORT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    if sandbox is not None:
        env["FORTNOX_AUTH_URL"] = sandbox.auth_url
        env["FORTNOX_API_URL"] = sandbox.api_url
    if slack is not None:
        env["SLACK_API_URL"] = slack.api_url
    env.update({k: v for k, v in over.items() if v is not None})
    return env
