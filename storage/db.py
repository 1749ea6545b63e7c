"""Engine and sessions for SQLite (default) and PostgreSQL (several replicas)."""
from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from storage.crypto import TokenCipher


class StoreUnavailable(Exception):
    """The store cannot be reached or used; the message names the database without its password."""


def _normalise(url: str) -> str:
    # Accept the common postgres:// and postgresql:// spellings; we ship psycopg 3.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def safe_url(url: str) -> str:
    try:
        return make_url(_normalise(url)).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable DATABASE_URL>"


def make_engine(url: str) -> Engine:
    url = _normalise(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # WAL lets readers work during a write; busy_timeout makes concurrent writers wait, not fail.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, pool_recycle=1800)


class Database:
    def __init__(self, url: str, cipher: TokenCipher | None = None):
        self.url = url
        self.engine = make_engine(url)
        self.cipher = cipher
        # SQLite has one writer at a time, and a writer that finds it taken sleeps in growing steps (up to
        # 100 ms) before trying again; with the bot's worker threads contending, most time went to those
        # sleeps. Taking turns in-process hands the database over at once. (RLock: a nested unit of work
        # in the same thread must not wait for itself.) PostgreSQL locks rows, so it needs no such turn.
        self._turn = threading.RLock() if self.engine.dialect.name == "sqlite" else nullcontext()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any error."""
        with self._turn, Session(self.engine, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work. On SQLite it skips the writers' turn: in WAL mode readers see the last
        commit without waiting for (or holding up) a writer, so a lookup on a request's path never queues
        behind the job worker's writes. Nothing is committed: closing hands the connection back to the pool,
        which rolls it back (and, unlike Session.rollback, leaves the rows read usable)."""
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
