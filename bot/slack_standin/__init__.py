"""A local stand-in for Slack's Web API and response_urls, for tests, `fortnox-bot demo` and benchmarks.

    from bot.slack_standin.runner import SlackStandin
    with SlackStandin(bot_token="xoxb-test") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
"""

from .state import RESPONSE_URL_MAX_USES, Call, Message, StandinState

__all__ = ["RESPONSE_URL_MAX_USES", "Call", "Message", "StandinState"]
