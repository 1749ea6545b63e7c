"""Diagnose for real: in-process through the runtime, or through the `fortnox-bot` CLI (subprocess or main())."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from bot.runtime import build_runtime
from bot.settings import load_settings
from tests.conftest import bot_env


def settings_for(sandbox, db_url: str, **over):
    """The bot's settings against a sandbox; `over` uses CONTRACT.md names ("" unsets a setting)."""
    return load_settings(env=bot_env(sandbox=sandbox, db_url=db_url, **over), need="store")


def diagnose(store, settings, tenant: str = "acme", **kw):
    """One diagnosis through the real runtime (Fortnox client, TokenManager, Diagnoser) on `store`."""
    async def go():
        rt = build_runtime(settings, store)
        try:
            return await rt.diagnoser.run(tenant, **kw)
        finally:
            await rt.aclose()

    return asyncio.run(go())


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def cli_env(sandbox=None, db_url: str = "", **over) -> dict:
    """A full process environment for the CLI: this one (PATH, HOME…) plus the bot's settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORTNOX_", "SLACK_")) and k not in ("DATABASE_URL", "ENCRYPTION_KEY")}
    env.update(bot_env(sandbox=sandbox, db_url=db_url, **over))
    env["FORTNOX_BOT_ENV_FILE"] = os.devnull
    env["PYTHONUNBUFFERED"] = "1"
    return {k: v for k, v in env.items() if v is not None}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot.cli", *args]


def run_cli(*args: str, env: dict, stdin: str | None = None, timeout: float = 60) -> Run:
    """The CLI as an operator runs it: a separate process."""
    proc = subprocess.run(cli_command(*args), env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def start_cli(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(cli_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> Run:
    out, err = proc.communicate(timeout=timeout)
    return Run(proc.returncode, out, err)


def call_main(monkeypatch, capsys, *args: str, env: dict, stdin: str | None = None) -> Run:
    """The same CLI in this process (fast): environment patched, stdout/stderr captured."""
    import io

    from bot.cli import main

    for name in [n for n in os.environ if n.startswith(("FORTNOX_", "SLACK_"))]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name.startswith(("FORTNOX_", "SLACK_")) or name in ("DATABASE_URL", "ENCRYPTION_KEY"):
            monkeypatch.setenv(name, value)
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:   # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return Run(code, out, err)
