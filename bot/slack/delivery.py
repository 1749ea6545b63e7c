"""Slack delivery jobs: post or update an incident's alert, thread replies, response_url answers.

They run from the durable job queue, so nothing is lost across restarts, and one lane per message keeps
the order of updates. slack_sdk's retry handlers absorb short 429/5xx bursts; anything longer becomes
RetryLater and the job waits in the store.
"""
from __future__ import annotations

import logging

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import metrics
from bot.aio import run_db
from bot.cards.model import Mention, Text
from bot.incidents.card import IncidentView, build_incident_card
from bot.jobs.worker import GiveUp, RetryLater
from bot.slack.posted import alert_metadata, find_alert
from bot.slack.render import render_card, render_text_reply

log = logging.getLogger(__name__)

CHANNEL_ERRORS = ("not_in_channel", "channel_not_found", "is_archived")
MAX_EVENTS_SHOWN = 200


def text_to_json(text: Text) -> list:
    return [p if isinstance(p, str) else {"user": p.user_id} for p in text.parts]


def text_from_json(parts: list) -> Text:
    return Text(tuple(p if isinstance(p, str) else Mention(str(p.get("user", ""))) for p in parts))


# Not Slack's answer to this request but its state: the same call works later.
TRANSIENT_ERRORS = ("internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited")
# The network, not Slack: aiohttp's connection errors, timeouts.
UNREACHABLE = (OSError, TimeoutError, aiohttp.ClientError)


def slack_error(resp) -> str | None:
    """Slack's error code; None when the body is not Slack's JSON (e.g. a 503 page from its load balancer)."""
    return resp.data.get("error") if isinstance(resp.data, dict) else None


def _retry_after(resp) -> float:
    try:
        return max(1.0, float(resp.headers.get("Retry-After") or 5))
    except ValueError:
        return 5.0


def _retryable(exc: Exception) -> RetryLater | None:
    """RetryLater for a passing condition (the job waits in the store, backing off), None for a refusal."""
    if isinstance(exc, SlackApiError):
        resp = exc.response
        if resp.status_code == 429:
            return RetryLater("Slack rate limit", _retry_after(resp))
        if resp.status_code >= 500 or slack_error(resp) in TRANSIENT_ERRORS:
            return RetryLater(f"Slack error {resp.status_code} {slack_error(resp) or ''}".rstrip(), None)
        return None
    return RetryLater(f"Slack unreachable: {type(exc).__name__}", None)


def channel_note(channel: str, error: str) -> str:
    fix = {"not_in_channel": "invite the bot there (/invite @fortnox-bot)",
           "is_archived": "unarchive it or give the tenant another channel (fortnox-bot tenant set --channel)",
           "channel_not_found": "check the tenant's channel id (fortnox-bot tenant set --channel)"}.get(error, "")
    return f"Posted here because the tenant's channel {channel} answered {error}" + (f": {fix}." if fix else ".")


class SlackDelivery:
    def __init__(self, bot):
        self.bot = bot

    @property
    def slack(self):
        return self.bot.slack

    async def view(self, incident_id: str) -> IncidentView | None:
        st = self.bot.store
        inc = await run_db(st.incidents.get, incident_id)
        if inc is None:
            return None
        tenant = await run_db(st.tenants.get, inc.tenant_id) if inc.tenant_id else None
        diagnosis = await run_db(st.diagnoses.get, inc.diagnosis_id) if inc.diagnosis_id else None
        v = IncidentView(incident=inc, tenant_name=tenant.name if tenant else "", diagnosis=diagnosis,
                         replay_enabled=bool(self.bot.settings.platform_replay_url), channel_note=inc.channel_note or "")
        if inc.platform:
            children = await run_db(st.incidents.children, inc.id)
            names = dict(await run_db(st.tenants.ids_and_names))
            v.affected = [(c.tenant_id, names.get(c.tenant_id, ""), c.open_key is not None) for c in children]
        else:
            v.events = await run_db(st.incidents.events, inc.id, MAX_EVENTS_SHOWN)
        requests = getattr(st, "requests", None)
        if requests is not None and not inc.platform:
            v.request = await run_db(requests.latest_for_incident, inc.id)
        return v

    async def _call(self, method: str, **kwargs):
        try:
            resp = await self.slack.api_call(method, json=kwargs)
            metrics.SLACK_CALLS.labels(method, "ok").inc()
            return resp
        except SlackApiError as exc:
            metrics.SLACK_CALLS.labels(method, slack_error(exc.response) or str(exc.response.status_code)).inc()
            raise
        except Exception:
            metrics.SLACK_CALLS.labels(method, "unreachable").inc()
            raise

    async def sync(self, payload: dict) -> None:
        """Post the incident's alert once, then keep it up to date with chat.update."""
        v = await self.view(payload["incident"])
        if v is None:
            raise GiveUp(f"incident {payload['incident']} does not exist")
        inc = v.incident
        if inc.parent_id and not inc.message_ts:
            return   # folded into a platform incident: that message speaks for it
        if inc.status == "resolved" and not inc.message_ts:
            return   # healed before anyone was alerted: stay quiet
        settings = self.bot.settings
        tenant = await run_db(self.bot.store.tenants.get, inc.tenant_id) if inc.tenant_id else None
        channel = inc.channel or (tenant.channel if tenant and tenant.channel else settings.alert_channel)
        try:
            if not inc.message_ts and inc.post_started_at is not None:
                # An earlier attempt was cut off (crash, timeout): it may have posted already.
                found = await find_alert(self.slack, (channel, settings.alert_channel), inc.id, inc.post_started_at)
                if found:
                    await run_db(self.bot.store.incidents.set_message, inc.id, *found)
                    await self._audit_post(inc, *found)
                    inc = v.incident = await run_db(self.bot.store.incidents.get, inc.id)
            if inc.message_ts:
                await self._call("chat.update", channel=inc.channel, ts=inc.message_ts, **render_card(build_incident_card(v)))
                return
            message = {**render_card(build_incident_card(v)), "metadata": alert_metadata(inc.id)}
            await run_db(self.bot.store.incidents.begin_post, inc.id)
            try:
                resp = await self._call("chat.postMessage", channel=channel, **message)
            except SlackApiError as exc:
                error = slack_error(exc.response)
                if error not in CHANNEL_ERRORS or channel == settings.alert_channel:
                    raise
                # The tenant's channel cannot take the alert: use ALERT_CHANNEL and say why (kept on updates).
                log.warning("alert %s: channel %s answered %s; posting to ALERT_CHANNEL", inc.id, channel, error)
                v.channel_note = channel_note(channel, error)
                channel = settings.alert_channel
                resp = await self._call("chat.postMessage", channel=channel, metadata=alert_metadata(inc.id),
                                        **render_card(build_incident_card(v)))
            await run_db(self.bot.store.incidents.set_message, inc.id, resp["channel"], resp["ts"],
                         note=v.channel_note or None)
            await self._audit_post(inc, resp["channel"], resp["ts"])
        except SlackApiError as exc:
            retry = _retryable(exc)
            if retry:
                raise retry from None
            raise GiveUp(f"Slack refused the alert: {slack_error(exc.response)}") from None
        except UNREACHABLE as exc:
            raise _retryable(exc) from None

    async def _audit_post(self, inc, channel: str, ts: str) -> None:
        link = None
        try:
            link = (await self._call("chat.getPermalink", channel=channel, message_ts=ts)).get("permalink")
        except Exception:
            pass
        await run_db(self.bot.store.audit.record, "alert_posted", tenant_id=inc.tenant_id, incident_id=inc.id,
                     detail={"channel": channel}, permalink=link)

    async def reply(self, payload: dict) -> None:
        """A thread reply under the incident's alert (history: re-diagnoses, snoozes, links)."""
        inc = await run_db(self.bot.store.incidents.get, payload["incident"])
        if inc is None:
            raise GiveUp("incident gone")
        target = inc
        if not inc.message_ts and inc.parent_id:
            target = await run_db(self.bot.store.incidents.get, inc.parent_id)
        if target is None or not target.message_ts:
            if payload.get("channel"):
                target = None
            else:
                raise RetryLater("the alert is not posted yet", 2.0)
        body = render_text_reply(text_from_json(payload["text"]))
        try:
            if target is None:
                await self._call("chat.postMessage", channel=payload["channel"], **body)
            else:
                await self._call("chat.postMessage", channel=target.channel, thread_ts=target.message_ts, **body)
        except SlackApiError as exc:
            retry = _retryable(exc)
            if retry:
                raise retry from None
            raise GiveUp(f"Slack refused the reply: {slack_error(exc.response)}") from None
        except UNREACHABLE as exc:
            raise _retryable(exc) from None

    async def respond(self, payload: dict) -> None:
        """Answer a slash command or button through its response_url (works where the bot is not a member)."""
        client = AsyncWebhookClient(payload["response_url"], timeout=10)
        try:
            resp = await client.send_dict(payload["message"])
        except Exception as exc:
            raise RetryLater(f"response_url unreachable: {type(exc).__name__}", 3.0) from None
        metrics.SLACK_CALLS.labels("response_url", str(resp.status_code)).inc()
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryLater(f"response_url answered {resp.status_code}", 3.0)
        if resp.status_code >= 400:
            raise GiveUp(f"response_url answered {resp.status_code} {resp.body[:100]}")
