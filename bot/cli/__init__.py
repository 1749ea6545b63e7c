"""`fortnox-bot` command line: argument parsing and dispatch. Each command group lives in its own module."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from bot.settings import SettingsError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or input from the person at the terminal: one clear line, exit 2."""


def _parser() -> argparse.ArgumentParser:
    from bot.cli import audit, db, diagnose, servers, tenants

    p = argparse.ArgumentParser(prog="fortnox-bot", description="Diagnose and fix Fortnox integration logins from Slack.")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log output on standard error: -v the bot's debug log, -vv every library's too")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (servers, diagnose, tenants, db, audit):
        module.register(sub)
    return p


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now: main() may run many times in one process (tests)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _QuietFortnox(logging.Filter):
    """Fortnox's refusals below ERROR are dropped: a diagnosis shows them as its evidence already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.name.startswith("bot.fortnox")


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
_QUIET = _QuietFortnox()
_OURS = ("bot", "storage")


def _logging(verbose: int) -> dict[str, int]:
    """Logs go to standard error only (stdout carries --json); other handlers (e.g. pytest's) are left alone.

    Returns the levels it changed, so main() can put them back.
    """
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    _HANDLER.setLevel(logging.DEBUG if verbose else logging.WARNING)
    changed = {}
    names = (_OURS + ("",)) if verbose >= 2 else _OURS if verbose else ()
    for name in names:
        logger = logging.getLogger(name or None)
        changed[name] = logger.level
        logger.setLevel(logging.DEBUG)
    return changed


def quiet_fortnox_logs(verbose: int) -> None:
    """For commands whose output already shows Fortnox's answers (diagnose); -v keeps every line."""
    if not verbose:
        _HANDLER.addFilter(_QUIET)


def _store_failure(exc: BaseException) -> str | None:
    """One line for a store that cannot be used, naming it without its password; None if not a store error."""
    from storage.db import StoreUnavailable, safe_url

    module = type(exc).__module__ or ""
    if isinstance(exc, StoreUnavailable) or module.startswith(("sqlalchemy", "psycopg", "sqlite3", "alembic")):
        url = safe_url(os.environ.get("DATABASE_URL") or "sqlite:///fortnox-bot.db")
        return f"the store at {url} cannot be used ({type(exc).__name__})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)   # argparse exits 2 on usage errors by itself
    levels = _logging(args.verbose)
    try:
        return args.run(args) or EXIT_OK
    except SettingsError as exc:
        print(f"fortnox-bot: setting {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"fortnox-bot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:   # the store is down or similar: one line, no traceback (use -v for details)
        if args.verbose:
            logging.getLogger("bot.cli").debug("failed", exc_info=True)
        text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"fortnox-bot: {_store_failure(exc) or text}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for name, level in levels.items():
            logging.getLogger(name or None).setLevel(level)
        logging.getLogger().removeHandler(_HANDLER)
        _HANDLER.removeFilter(_QUIET)


if __name__ == "__main__":
    sys.exit(main())
