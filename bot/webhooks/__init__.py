"""Inbound webhooks from the integration platform."""
