"""`fortnox-bot` command line: argument parsing and dispatch. Each command group lives in its own module."""
from __future__ import annotations

import argparse
import logging
import sys

from bot.settings import SettingsError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or input from the person at the terminal: one clear line, exit 2."""


def _parser() -> argparse.ArgumentParser:
    from bot.cli import audit, db, diagnose, servers, tenants

    p = argparse.ArgumentParser(prog="fortnox-bot", description="Diagnose and fix Fortnox integration logins from Slack.")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output (on standard error)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (servers, diagnose, tenants, db, audit):
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)   # argparse exits 2 on usage errors by itself
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        from storage.db import safe_url

        if args.verbose:
            logging.exception("failed")
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        name = type(exc).__name__
        if "OperationalError" in name or "sqlalchemy" in type(exc).__module__:
            import os

            msg = f"the store at {safe_url(os.environ.get('DATABASE_URL', 'sqlite:///fortnox-bot.db'))} cannot be used ({name})"
        print(f"fortnox-bot: {msg}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
