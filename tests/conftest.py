"""Shared fixtures: real local servers (Fortnox sandbox, Slack stand-in, the bot) over loopback, SQLite and PostgreSQL."""
from __future__ import annotations

import os

import pytest

from bot.sandbox.runner import SandboxServer
from bot.sandbox.world import World
from bot.settings import load_settings
from bot.slack_standin.runner import SlackStandin
from storage import Store, TokenCipher
from tests.support import db as testdb
from tests.support.env import ENCRYPTION_KEY, bot_env  # noqa: F401 - bot_env: imported from here by tests
from tests.support.seed import ADMIN, CLIENT_ID, CLIENT_SECRET

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL at 127.0.0.1:5432")
    # Tests never read the developer's .env or real Slack settings.
    for name in list(os.environ):
        if name.startswith(("SLACK_", "FORTNOX_")) or name in ("DATABASE_URL", "ENCRYPTION_KEY", "EXPORT_WEBHOOK_SECRET"):
            del os.environ[name]
    os.environ["FORTNOX_BOT_ENV_FILE"] = os.devnull


@pytest.fixture(scope="session")
def pg_url():
    reason = testdb.postgres_available()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason}: CI must run the PostgreSQL lane")
        yield None
        return
    url = testdb.create_pg_database()
    store = Store(url)
    store.upgrade()
    store.close()
    yield url
    testdb.drop_pg_database(url)


def _pg(pg_url):
    if pg_url is None:
        pytest.skip(testdb.postgres_available() or "PostgreSQL not available")
    testdb.truncate_all(pg_url)
    return pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, pg_url):
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/bot.db"
    return _pg(pg_url)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/bot.db"


@pytest.fixture
def postgres_url(pg_url):
    return _pg(pg_url)


@pytest.fixture
def cipher():
    return TokenCipher(ENCRYPTION_KEY)


@pytest.fixture
def store(db_url, cipher):
    st = Store(db_url, cipher)
    st.upgrade()
    yield st
    st.close()


@pytest.fixture
def sqlite_store(sqlite_url, cipher):
    """A migrated store on a fresh SQLite file, for tests that need no PostgreSQL lane."""
    st = Store(sqlite_url, cipher)
    st.upgrade()
    yield st
    st.close()


@pytest.fixture
def world():
    return World(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.fixture
def sandbox(world):
    with SandboxServer(world) as server:
        yield server


@pytest.fixture
def slack():
    with SlackStandin(bot_token="xoxb-test") as standin:
        standin.state.usergroups = {"S0ADMINS": [ADMIN]}
        yield standin


def make_settings(**kw):
    return load_settings(env=bot_env(**kw), need="serve")


@pytest.fixture
def settings(sandbox, slack, db_url):
    return make_settings(sandbox=sandbox, slack=slack, db_url=db_url)


@pytest.fixture
def server_factory(sandbox, slack, db_url):
    """Start the real bot over loopback; extra settings as keyword arguments (names as in CONTRACT.md)."""
    from bot.web.runner import BotServer

    started = []

    def start(**over):
        server = BotServer(lambda url: make_settings(sandbox=sandbox, slack=slack, db_url=db_url, bot_url=url, **over),
                           bot_kwargs={"maintenance": False, "worker_poll": 0.05})
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory):
    return server_factory()
