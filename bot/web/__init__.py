"""The one HTTP server: Slack, the export webhook, the OAuth callback, health and metrics."""
