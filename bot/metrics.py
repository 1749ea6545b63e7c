"""Prometheus metrics (GET /metrics). A private registry keeps tests and several apps in one process apart."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOKS = Counter("fortnox_bot_webhooks_total", "Export webhooks by answer", ["status"], registry=REGISTRY)
DIAGNOSES = Counter("fortnox_bot_diagnoses_total", "Diagnoses by cause", ["cause"], registry=REGISTRY)
SLACK_CALLS = Counter("fortnox_bot_slack_calls_total", "Slack Web API calls by method and outcome",
                      ["method", "outcome"], registry=REGISTRY)
JOBS = Counter("fortnox_bot_jobs_total", "Background jobs by kind and outcome", ["kind", "outcome"], registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
