"""A local Fortnox-compatible sandbox (OAuth2 + REST) whose world of companies, users, licences and
grants behaves like Fortnox, so the bot's diagnosis meets real behaviour instead of canned answers."""
from bot.sandbox.app import create_app
from bot.sandbox.runner import SandboxServer, demo_world, main
from bot.sandbox.world import World, decode_rights

__all__ = ["World", "SandboxServer", "create_app", "demo_world", "main", "decode_rights"]
