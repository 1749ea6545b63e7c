"""Settings from the environment (or a `.env` file), as CONTRACT.md lists them.

A missing or malformed setting raises SettingsError naming it, so start-up can stop with one clear line.
"""
from __future__ import annotations

import base64
import math
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

from cryptography.fernet import Fernet
from dotenv import load_dotenv

from bot.fortnox.scopes import KIND_SCOPES, PROBE_SCOPE, parse_scopes

DEFAULT_SCOPES = frozenset(KIND_SCOPES.values()) | {PROBE_SCOPE}


class SettingsError(Exception):
    """One bad or missing setting; str() is the one line shown to the user."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///fortnox-bot.db"
    encryption_key: str = ""
    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_app_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    alert_channel: str = ""
    fortnox_admins: frozenset[str] = frozenset()
    fortnox_admin_group: str = ""
    fortnox_client_id: str = ""
    fortnox_client_secret: str = ""
    fortnox_redirect_uri: str = ""
    fortnox_auth_url: str = "https://apps.fortnox.se/oauth-v1"
    fortnox_api_url: str = "https://api.fortnox.se/3"
    export_webhook_secret: str = ""
    fortnox_scopes: frozenset[str] = field(default=DEFAULT_SCOPES)
    consent_link_ttl_hours: float = 72.0
    approval_ttl_hours: float = 24.0
    allow_self_approval: bool = False
    platform_replay_url: str = ""
    host: str = "127.0.0.1"
    port: int = 3000
    # Operational tuning, not in CONTRACT.md (docs/replicas.md): env FORTNOX_BOT_JOB_LEASE_SECONDS,
    # FORTNOX_BOT_REFRESH_LEASE_SECONDS, FORTNOX_BOT_HTTP_TIMEOUT_SECONDS, FORTNOX_BOT_RUN_JOBS.
    job_lease_seconds: float = 120.0       # a dead replica's jobs are taken over after this long
    refresh_lease_seconds: float = 60.0    # a refresh lease older than this was abandoned (F-D1)
    http_timeout_seconds: float = 10.0     # per call to Slack's Web API and to Fortnox
    run_jobs: bool = True                  # FORTNOX_BOT_RUN_JOBS=false: `serve` leaves jobs to `fortnox-bot worker`

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)


# Settings each command cannot run without (CONTRACT.md "required for serve").
REQUIRED = {
    "serve": ("ENCRYPTION_KEY", "SLACK_BOT_TOKEN", "ALERT_CHANNEL", "FORTNOX_CLIENT_ID",
              "FORTNOX_CLIENT_SECRET", "FORTNOX_REDIRECT_URI", "EXPORT_WEBHOOK_SECRET"),
    # `fortnox-bot worker`: serve's settings except those only HTTP requests need (signatures).
    "worker": ("ENCRYPTION_KEY", "SLACK_BOT_TOKEN", "ALERT_CHANNEL", "FORTNOX_CLIENT_ID", "FORTNOX_CLIENT_SECRET",
               "FORTNOX_REDIRECT_URI"),
    "store": ("ENCRYPTION_KEY",),
    "fortnox": ("ENCRYPTION_KEY", "FORTNOX_CLIENT_ID", "FORTNOX_CLIENT_SECRET", "FORTNOX_REDIRECT_URI"),
    "none": (),
}


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(name, f"expected true or false, got {raw!r}")


def _number(name: str, raw: str, kind=float, minimum: float = 0):
    try:
        value = kind(raw.strip())
    except ValueError:
        raise SettingsError(name, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):   # float() reads "nan" and "inf"; neither is a duration, and nan passes any check
        raise SettingsError(name, f"expected a finite number, got {raw!r}")
    if value < minimum:
        raise SettingsError(name, f"must be at least {minimum}, got {raw!r}")
    return value


def _url(name: str, raw: str) -> str:
    parsed = urlparse(raw.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(name, f"expected an http(s) URL, got {raw!r}")
    return raw.strip()


def _fernet_keys(name: str, raw: str) -> str:
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise SettingsError(name, "is empty")
    for i, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except Exception:
            # Never echo the key itself: it is a secret.
            raise SettingsError(name, f"key {i} is not a valid Fernet key (32 url-safe base64 bytes; "
                                      "make one with: python -c 'from cryptography.fernet import Fernet; "
                                      "print(Fernet.generate_key().decode())')") from None
    return ",".join(keys)


def load_settings(env: dict[str, str] | None = None, *, need: str = "none", dotenv: bool = True) -> Settings:
    """Read settings; `need` names the command so its required settings are checked."""
    if env is None:
        if dotenv:
            load_dotenv(os.environ.get("FORTNOX_BOT_ENV_FILE", ".env"), override=False)
        env = dict(os.environ)

    def get(name: str) -> str:
        return env.get(name, "").strip()

    for name in REQUIRED[need]:
        if not get(name):
            raise SettingsError(name, "is required but not set")

    kw: dict = {}
    if get("DATABASE_URL"):
        url = get("DATABASE_URL")
        if "://" not in url:
            raise SettingsError("DATABASE_URL", f"expected an SQLAlchemy URL like sqlite:///fortnox-bot.db, got {url!r}")
        kw["database_url"] = url
    if get("ENCRYPTION_KEY"):
        kw["encryption_key"] = _fernet_keys("ENCRYPTION_KEY", get("ENCRYPTION_KEY"))
    token = get("SLACK_BOT_TOKEN")
    if token:
        if not token.startswith("xoxb-"):
            raise SettingsError("SLACK_BOT_TOKEN", "expected a bot token starting with xoxb-")
        kw["slack_bot_token"] = token
    app_token = get("SLACK_APP_TOKEN")
    if app_token:
        if not app_token.startswith("xapp-"):
            raise SettingsError("SLACK_APP_TOKEN", "expected an app-level token starting with xapp-")
        kw["slack_app_token"] = app_token
    kw["slack_signing_secret"] = get("SLACK_SIGNING_SECRET")
    if need == "serve" and not app_token and not kw["slack_signing_secret"]:
        # Bolt would accept an empty secret and then reject every request: refuse at start instead.
        raise SettingsError("SLACK_SIGNING_SECRET", "is required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)")
    if get("SLACK_API_URL"):
        url = _url("SLACK_API_URL", get("SLACK_API_URL"))
        kw["slack_api_url"] = url if url.endswith("/") else url + "/"  # slack_sdk urljoins method names
    kw["alert_channel"] = get("ALERT_CHANNEL")
    if kw["alert_channel"] and not re.match(r"^[CGD][A-Z0-9]{2,20}$", kw["alert_channel"]):
        raise SettingsError("ALERT_CHANNEL", f"expected a Slack channel ID like C0123ABCD, got {kw['alert_channel']!r} "
                                             "(channel details in Slack show it)")
    kw["fortnox_admins"] = frozenset(u.strip() for u in get("FORTNOX_ADMINS").split(",") if u.strip())
    kw["fortnox_admin_group"] = get("FORTNOX_ADMIN_GROUP")
    kw["fortnox_client_id"] = get("FORTNOX_CLIENT_ID")
    kw["fortnox_client_secret"] = get("FORTNOX_CLIENT_SECRET")
    if get("FORTNOX_REDIRECT_URI"):
        kw["fortnox_redirect_uri"] = _url("FORTNOX_REDIRECT_URI", get("FORTNOX_REDIRECT_URI"))
    for name, attr in (("FORTNOX_AUTH_URL", "fortnox_auth_url"), ("FORTNOX_API_URL", "fortnox_api_url")):
        if get(name):
            kw[attr] = _url(name, get(name)).rstrip("/")
    secret = get("EXPORT_WEBHOOK_SECRET")
    if secret:
        if not secret.startswith("whsec_"):
            raise SettingsError("EXPORT_WEBHOOK_SECRET", "expected a Standard Webhooks secret starting with whsec_")
        try:   # the part after whsec_ is base64: a typo here would make every webhook fail with 401
            if not base64.b64decode(secret[len("whsec_"):], validate=True):
                raise ValueError
        except ValueError:
            raise SettingsError("EXPORT_WEBHOOK_SECRET", "the part after whsec_ is not base64") from None
        kw["export_webhook_secret"] = secret
    if get("FORTNOX_SCOPES"):
        scopes = parse_scopes(get("FORTNOX_SCOPES"))
        if not scopes:
            raise SettingsError("FORTNOX_SCOPES", "lists no scope")
        kw["fortnox_scopes"] = scopes
    if get("CONSENT_LINK_TTL_HOURS"):
        kw["consent_link_ttl_hours"] = _number("CONSENT_LINK_TTL_HOURS", get("CONSENT_LINK_TTL_HOURS"), minimum=0.01)
    if get("APPROVAL_TTL_HOURS"):
        kw["approval_ttl_hours"] = _number("APPROVAL_TTL_HOURS", get("APPROVAL_TTL_HOURS"), minimum=0.01)
    if get("ALLOW_SELF_APPROVAL"):
        kw["allow_self_approval"] = _bool("ALLOW_SELF_APPROVAL", get("ALLOW_SELF_APPROVAL"))
    if get("PLATFORM_REPLAY_URL"):
        kw["platform_replay_url"] = _url("PLATFORM_REPLAY_URL", get("PLATFORM_REPLAY_URL"))
    if get("HOST"):
        kw["host"] = get("HOST")
    if get("PORT"):
        kw["port"] = _number("PORT", get("PORT"), kind=int, minimum=0)
        if kw["port"] > 65535:
            raise SettingsError("PORT", f"must be at most 65535, got {get('PORT')!r}")
    for name, attr in (("FORTNOX_BOT_JOB_LEASE_SECONDS", "job_lease_seconds"),
                       ("FORTNOX_BOT_REFRESH_LEASE_SECONDS", "refresh_lease_seconds"),
                       ("FORTNOX_BOT_HTTP_TIMEOUT_SECONDS", "http_timeout_seconds")):
        if get(name):
            kw[attr] = _number(name, get(name), minimum=0.1)
    if get("FORTNOX_BOT_RUN_JOBS"):
        kw["run_jobs"] = _bool("FORTNOX_BOT_RUN_JOBS", get("FORTNOX_BOT_RUN_JOBS"))
    timeout = kw.get("http_timeout_seconds", Settings.http_timeout_seconds)
    if kw.get("refresh_lease_seconds", Settings.refresh_lease_seconds) <= timeout:
        # A refresh still waiting for Fortnox must never look abandoned to another replica.
        raise SettingsError("FORTNOX_BOT_REFRESH_LEASE_SECONDS",
                            f"must be longer than the HTTP timeout ({timeout:g} s)")
    return Settings(**kw)
