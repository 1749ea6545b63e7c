"""mrkdwn escaping for any text that did not come from the bot itself (F-S4).

Slack decodes exactly three entities, so exactly three are encoded: `&` first
(else the `&` of `&lt;` would be escaped again), then `<` and `>`. That is
enough to turn `<!channel>`, `<@U…>` and `<url|label>` into literal text.
"""

from __future__ import annotations

__all__ = ["escape_mrkdwn"]


def escape_mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
