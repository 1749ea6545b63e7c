"""`fortnox-bot db upgrade`."""
from __future__ import annotations

from bot.cli import common
from storage.db import safe_url


def register(sub) -> None:
    p = sub.add_parser("db", help="database maintenance")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dsub.required = True
    up = dsub.add_parser("upgrade", help="apply schema migrations")
    up.set_defaults(run=_upgrade)


def _upgrade(args) -> int:
    s = common.settings("none")
    from bot.runtime import open_store
    from storage.migrate import current

    st = open_store(s, upgrade=True)
    print(f"database {safe_url(s.database_url)} is at revision {current(st.db)}")
    return 0
