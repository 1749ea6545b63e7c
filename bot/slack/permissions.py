"""Who may approve reactivations: FORTNOX_ADMINS, or members of FORTNOX_ADMIN_GROUP (cached briefly)."""
from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 90.0   # usergroups.users.list is Tier 2


class Admins:
    def __init__(self, settings, slack):
        self.settings = settings
        self.slack = slack
        self._members: frozenset[str] = frozenset()
        self._fetched_at = 0.0

    async def _group(self) -> frozenset[str]:
        group = self.settings.fortnox_admin_group
        if not group:
            return frozenset()
        if time.monotonic() - self._fetched_at < GROUP_CACHE_SECONDS:
            return self._members
        try:
            resp = await self.slack.usergroups_users_list(usergroup=group)
            self._members = frozenset(resp.get("users") or [])
        except SlackApiError as exc:
            # plan_upgrade_required and friends: fall back to FORTNOX_ADMINS alone, say so in the log.
            log.warning("cannot read FORTNOX_ADMIN_GROUP %s: %s", group, exc.response.get("error"))
            self._members = frozenset()
        except Exception as exc:
            log.warning("cannot read FORTNOX_ADMIN_GROUP %s: %s", group, type(exc).__name__)
            return self._members   # keep the last good answer for a transient failure
        self._fetched_at = time.monotonic()
        return self._members

    async def is_admin(self, user_id: str) -> bool:
        if not user_id:
            return False
        if user_id in self.settings.fortnox_admins:
            return True
        return user_id in await self._group()

    def configured(self) -> bool:
        return bool(self.settings.fortnox_admins or self.settings.fortnox_admin_group)
