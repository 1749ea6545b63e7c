"""The one entry point to persistence: `Store(url, cipher)` with one repository per aggregate."""
from __future__ import annotations

from storage.audit import Audit
from storage.connections import Connections
from storage.consents import Consents
from storage.crypto import TokenCipher
from storage.db import Database
from storage.diagnoses import Diagnoses
from storage.incidents import Incidents
from storage.jobs import Jobs
from storage.requests import Requests
from storage.slack_events import SlackEvents
from storage.tenants import Tenants


class Store:
    def __init__(self, url: str, cipher: TokenCipher | None = None):
        self.db = Database(url, cipher)
        self.tenants = Tenants(self.db)
        self.connections = Connections(self.db)
        self.diagnoses = Diagnoses(self.db)
        self.audit = Audit(self.db)
        self.consents = Consents(self.db)
        self.jobs = Jobs(self.db)
        self.incidents = Incidents(self.db, self.jobs)
        self.slack_events = SlackEvents(self.db)
        self.requests = Requests(self.db, self.jobs, self.audit)

    def upgrade(self) -> None:
        from storage.migrate import upgrade

        upgrade(self.db)

    def ping(self) -> bool:
        return self.db.ping()

    def close(self) -> None:
        self.db.dispose()
