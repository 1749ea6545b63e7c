"""The fix loop wired once: reactivation requests, the consent callback's logic, and replays."""
from __future__ import annotations

from bot.fix.completion import ConsentCompletion
from bot.fix.reactivation import Notes, Reactivations
from bot.fix.replay import JOB as REPLAY_JOB
from bot.fix.replay import Replayer


class FixService:
    def __init__(self, settings, store, runtime, incidents, *, notes: Notes, notify=lambda: None):
        self.reactivations = Reactivations(settings, store, notes)
        self.replayer = Replayer(settings, store, notes, notify=notify)
        self.completion = ConsentCompletion(settings, store, runtime, incidents, notes, self.replayer)

    def job_handlers(self) -> dict:
        return {REPLAY_JOB: self.replayer.run}

    async def maintain(self) -> None:
        """Run by the bot's maintenance loop: requests nobody decided in time expire (and their alert says so)."""
        await self.reactivations.expire_due()
