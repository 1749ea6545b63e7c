"""What every benchmark shares: a bot in a process of its own, the settings it runs with, seeding, stats, rows.

Everything runs over loopback: the Fortnox sandbox and the Slack stand-in live in the bench process,
the bot under test in a child (`python -m bench.serve`) so its CPU and memory are its alone.
"""
from __future__ import annotations

import math
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from storage import Store, TokenCipher
from tests.support import db as testdb
from tests.support.env import ENCRYPTION_KEY, bot_env  # noqa: F401 - bot_env: the bench modules import it from here
from tests.support.seed import seed_tenant

ROOT = Path(__file__).resolve().parent.parent
_MIGRATING = threading.Lock()   # alembic keeps its migration context in module globals: one at a time


@dataclass
class Row:
    """One line of the printed table, plus what explains it."""

    figure: str
    target: str
    measured: str
    verdict: str                                     # pass | MISS | skip | ERROR
    notes: list[str] = field(default_factory=list)   # for a miss: by how much, why, what would close it
    data: dict = field(default_factory=dict)         # raw numbers (for the smoke test and --json)
    detail: str = ""                                 # context printed under the table


def verdict(ok: bool) -> str:
    return "pass" if ok else "MISS"


# --- numbers ------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the value below which p % of the samples fall (no interpolation)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def where_time_went(cpu: float, wall: float) -> str:
    """What a process did with `wall` seconds in which it used `cpu` seconds of CPU."""
    busy, load, cpus = cpu / max(wall, 1e-9), os.getloadavg()[0], os.cpu_count() or 1
    if busy > 0.8:
        return f"it was CPU-bound ({busy:.0%} of a core)"
    if load > cpus:
        return (f"it used {busy:.0%} of a core while the machine's load was {load:.1f} on {cpus} CPUs, so it "
                "waited for a CPU as much as for anything")
    return f"it used only {busy:.0%} of a core: it waited (store turns, thread hand-offs), not worked"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


# --- settings and stores -------------------------------------------------------------------------
def open_store(db_url: str) -> Store:
    store = Store(db_url, TokenCipher(ENCRYPTION_KEY))
    with _MIGRATING:
        store.upgrade()
    return store


class TempDatabase:
    """A throw-away SQLite file or PostgreSQL database (127.0.0.1:5432, created and dropped like the tests do)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.url = ""
        self._dir: tempfile.TemporaryDirectory | None = None

    @staticmethod
    def unavailable(kind: str) -> str | None:
        return testdb.postgres_available() if kind == "postgres" else None

    def __enter__(self) -> "TempDatabase":
        if self.kind == "postgres":
            self.url = testdb.create_pg_database()
        else:
            self._dir = tempfile.TemporaryDirectory(prefix="fortnox-bench-")
            self.url = f"sqlite:///{self._dir.name}/bot.db"
        return self

    def __exit__(self, *exc) -> None:
        if self.kind == "postgres":
            testdb.drop_pg_database(self.url)
        elif self._dir is not None:
            self._dir.cleanup()


def seed_tenants(store, world, count: int, *, prefix: str = "t", first_company: int = 100_000,
                 **kw) -> list[str]:
    """`count` tenants, each with tokens the sandbox issued (see tests/support/seed.py)."""
    ids = []
    for i in range(count):
        tenant = f"{prefix}{i:05d}"
        seed_tenant(store, world, tenant, company=first_company + i, user=1, name=f"Tenant {i}", **kw)
        ids.append(tenant)
    return ids


def wait_for_jobs(store, timeout: float) -> float | None:
    """Seconds until no job is pending or running, or None if that did not happen within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        counts = store.jobs.counts()
        if not counts.get("pending") and not counts.get("running"):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def utc_now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- the bot in its own process ---------------------------------------------------------------------
def child_env(env: dict[str, str]) -> dict[str, str]:
    """A child's environment: this one without Slack/Fortnox settings or a .env file, plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FORTNOX_"))}
    return {**clean, **env, "FORTNOX_BOT_ENV_FILE": os.devnull}


class BotProcess:
    """`python -m bench.serve` (the real BotServer) in a child process; `url`, `pid`, peak RSS, CPU time.

    jobs_apart: the deployment for throughput (docs/replicas.md): the server answers HTTP only
    (FORTNOX_BOT_RUN_JOBS=false) and `fortnox-bot worker` runs the jobs in a second process. CPU time is
    then both processes' together; peak RSS is reported for each.
    """

    def __init__(self, env: dict[str, str], *, jobs_apart: bool = False):
        self.env = {**env, "FORTNOX_BOT_RUN_JOBS": "false"} if jobs_apart else env
        self.jobs_apart = jobs_apart
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile(mode="w+")
        self._worker_log = tempfile.TemporaryFile(mode="w+")

    def start(self, timeout: float = 60.0) -> "BotProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.serve"], cwd=ROOT, env=child_env(self.env),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http://"):
            problem = f"the bot process did not start: {line or 'no answer'}\n{self.log_tail()}"
            self.stop()
            raise RuntimeError(problem)
        self.url = line
        if self.jobs_apart:
            env = {**self.env, "FORTNOX_REDIRECT_URI": f"{line}/oauth/fortnox/callback"}
            self.worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT, env=child_env(env),
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=self._worker_log, text=True)
            deadline = time.monotonic() + timeout
            while "worker running" not in self._tail(self._worker_log):
                if time.monotonic() > deadline or self.worker.poll() is not None:
                    problem = f"the worker process did not start:\n{self._tail(self._worker_log)}"
                    self.stop()
                    raise RuntimeError(problem)
                time.sleep(0.05)
        return self

    @staticmethod
    def _tail(log, lines: int = 20) -> str:
        log.seek(0)
        return "".join(log.readlines()[-lines:])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _status(self, key: str, pid: int | None = None) -> int:
        with open(f"/proc/{pid or self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the (server) process has had so far."""
        return self._status("VmHWM") / 1024

    def worker_peak_rss_mb(self) -> float | None:
        return self._status("VmHWM", self.worker.pid) / 1024 if self.worker else None

    @staticmethod
    def _cpu(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime

    def cpu_seconds(self) -> float:
        """CPU time of the server and, with jobs_apart, the worker."""
        return self._cpu(self.pid) + (self._cpu(self.worker.pid) if self.worker else 0.0)

    def server_cpu_seconds(self) -> float:
        return self._cpu(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        return self._tail(self._log, lines) + (self._tail(self._worker_log, lines) if self.worker else "")

    def stop(self) -> None:
        if self.proc is None:
            return
        for proc in (self.worker, self.proc):
            if proc is not None and proc.poll() is None:
                # Figures are read before stopping; jobs still in flight (slow Fortnox) need not finish.
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(1)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()
        self._log.close()
        self._worker_log.close()
        self.proc = self.worker = None

    def __enter__(self) -> "BotProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def cpu_seconds_self() -> float:
    t = os.times()
    return t.user + t.system
