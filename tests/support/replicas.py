"""Real `fortnox-bot serve` processes for multi-replica and crash tests.

Each replica is the installed console script in a subprocess with its own environment and port; the
tests share one PostgreSQL, one sandbox and one Slack stand-in with them. Nothing here reaches past
loopback. A replica's standard error goes to a file so tests can grep its logs for secrets.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from storage import Store, TokenCipher

# Names the product reads; a replica never inherits them from the developer's shell.
_SCRUB = ("SLACK_", "FORTNOX_", "DATABASE_URL", "ENCRYPTION_KEY", "EXPORT_WEBHOOK_SECRET", "HOST", "PORT",
          "PLATFORM_REPLAY_URL", "ALERT_CHANNEL", "CONSENT_LINK_TTL_HOURS", "APPROVAL_TTL_HOURS", "ALLOW_SELF_APPROVAL")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(role: str = "serve") -> list[str]:
    script = Path(sys.executable).with_name("fortnox-bot")
    if script.exists():
        return [str(script), "-v", role]
    return [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", "-v", role]


class Replica:
    """One `fortnox-bot serve` (or `worker`) subprocess. `url` is its base URL; `log` its standard error so far."""

    def __init__(self, env: dict[str, str], *, log_path: Path, port: int | None = None, name: str = "replica",
                 role: str = "serve"):
        self.role = role
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.log_path = log_path
        base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
        self.env = {**base, **env, "HOST": "127.0.0.1", "PORT": str(self.port), "PYTHONUNBUFFERED": "1",
                    "FORTNOX_BOT_ENV_FILE": os.devnull}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "Replica":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(_command(self.role), env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log}")
            if self.role == "worker":   # no HTTP: it says when it runs
                if "worker running" in self.log:
                    return self
                time.sleep(0.05)
                continue
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout} s:\n{self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, leases and half-done work left behind."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None


class Replicas:
    """Starts replicas sharing one store; stops every one at the end of the test."""

    def __init__(self, make_env, tmp_path: Path):
        self._make_env = make_env
        self._tmp = tmp_path
        self.started: list[Replica] = []

    def start(self, n: int = 1, *, role: str = "serve", **env_over) -> list[Replica]:
        """Start n replicas at once (concurrent start-up, as a deployment would) and wait for each to be up."""
        made = []
        for _ in range(n):
            i = len(self.started) + len(made)
            made.append(Replica(self._make_env(**env_over), log_path=self._tmp / f"replica{i}.log",
                                name=f"{role}{i}", role=role))
        self.started.extend(made)
        with ThreadPoolExecutor(len(made)) as pool:
            list(pool.map(lambda r: r.start(), made))
        return made

    def logs(self) -> str:
        return "\n".join(r.log for r in self.started)

    def stop_all(self) -> None:
        for r in self.started:
            r.stop()


# --- seeding ---------------------------------------------------------------------------------

SCOPES_SHORT = {"invoice", "companyinformation", "profile"}   # kinds invoice+customer also need `customer`


def seed_expired(store, world, tenant_id: str, **kw) -> dict:
    """seed_tenant, then the stored access token expired: the bot must refresh before any Fortnox call."""
    from datetime import timedelta

    from storage.types import utcnow
    from tests.support.seed import seed_tenant

    tokens = seed_tenant(store, world, tenant_id, **kw)
    c = store.connections.load(tenant_id)
    store.connections.store_tokens(tenant_id, access_token=c.access_token, refresh_token=c.refresh_token,
                                   expires_at=utcnow() - timedelta(minutes=5), scopes=c.scopes,
                                   company_id=c.company_id, user_id=c.user_id, client_id=c.client_id)
    return tokens


def message_with_button(slack, incident, action_id: str):
    """The incident's alert as Slack shows it now, if it offers `action_id` (for wait_until)."""
    from tests.support.slack import action_ids

    message = slack.messages[(incident.channel, incident.message_ts)]
    return message if action_id in action_ids(message) else None


# --- waiting ----------------------------------------------------------------------------------

def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; its value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_idle(store: Store, timeout: float = 30.0) -> None:
    """Until no job is pending or running in the shared store (every replica's worker has finished)."""
    def idle():
        return not store.jobs.pending()
    try:
        wait_until(idle, timeout, what="the job queue to drain")
    except AssertionError:
        left = [(j.kind, j.status, j.attempts, j.last_error) for j in store.jobs.pending()]
        raise AssertionError(f"jobs still pending after {timeout} s: {left}") from None


def concurrently(*calls, workers: int | None = None) -> list:
    """Run the callables at the same time from threads; their results in order (exceptions re-raised)."""
    with ThreadPoolExecutor(workers or len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


@pytest.fixture
def replicas(postgres_url, sandbox, slack, tmp_path):
    """Factory of real `fortnox-bot serve` processes on the test's PostgreSQL, sandbox and Slack stand-in."""
    from tests.conftest import bot_env

    def make_env(**over):
        return bot_env(sandbox=sandbox, slack=slack, db_url=postgres_url, **over)

    group = Replicas(make_env, tmp_path)
    yield group
    group.stop_all()


@pytest.fixture
def pg_store(postgres_url):
    from tests.conftest import ENCRYPTION_KEY

    st = Store(postgres_url, TokenCipher(ENCRYPTION_KEY))
    yield st
    st.close()
