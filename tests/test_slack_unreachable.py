"""A Slack Web API that cannot be reached is Slack's problem, not the request's: 503, not 400."""
from __future__ import annotations

import socket

import httpx

from bot.services import Bot
from bot.slack_standin.requests import slash_command
from bot.web.app import create_app
from tests.conftest import make_settings
from tests.support.seed import SIGNING_SECRET


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_signed_command_while_slack_is_unreachable_answers_503(sqlite_url):
    port = _closed_port()
    settings = make_settings(db_url=sqlite_url, SLACK_API_URL=f"http://127.0.0.1:{port}/api/")
    bot = Bot(settings, maintenance=False)
    app = create_app(settings, bot, start_background=False)
    body, headers = slash_command(SIGNING_SECRET, text="help", response_url=f"http://127.0.0.1:{port}/r")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        response = await client.post("/slack/events", content=body, headers=headers)
    await bot.runtime.aclose()
    assert response.status_code == 503
    assert response.json() == {"error": "Slack Web API unreachable; try again"}
    assert response.headers["retry-after"] == "30"
