"""Slack Events API envelopes already handled (F-S2): a unique row per event_id, shared by replicas."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import SlackEventSeen
from storage.types import utcnow


class SlackEvents:
    def __init__(self, db: Database):
        self.db = db

    def first_time(self, event_id: str, team_id: str = "") -> bool:
        """True exactly once per event_id, across restarts and replicas."""
        try:
            with self.db.session() as s:
                s.add(SlackEventSeen(event_id=event_id[:64], team_id=team_id[:32]))
            return True
        except IntegrityError:
            return False

    def forget_older_than(self, age: timedelta) -> int:
        with self.db.session() as s:
            return s.exec(delete(SlackEventSeen).where(SlackEventSeen.received_at < utcnow() - age)).rowcount
