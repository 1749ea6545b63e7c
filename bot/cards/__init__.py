"""Platform-neutral message model: domain code builds Cards, chat adapters render them (Slack, later Teams)."""
