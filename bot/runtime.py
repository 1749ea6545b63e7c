"""The composition root: builds the store, the Fortnox client, the token manager and the diagnoser from Settings."""
from __future__ import annotations

from dataclasses import dataclass

from bot.diagnosis.service import Diagnoser
from bot.fortnox.client import FortnoxClient
from bot.fortnox.ratelimit import RateLimiter
from bot.fortnox.tokens import TokenManager
from bot.settings import Settings
from storage import Store, TokenCipher

# A margin under Fortnox's 25 requests per 5 s per tenant (reference §9).
FORTNOX_RATE = (24, 5.0)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    fortnox: FortnoxClient
    tokens: TokenManager
    diagnoser: Diagnoser

    async def aclose(self) -> None:
        await self.fortnox.aclose()


def open_store(settings: Settings, *, upgrade: bool = False) -> Store:
    cipher = TokenCipher(settings.encryption_key) if settings.encryption_key else None
    store = Store(settings.database_url, cipher)
    if upgrade:
        store.upgrade()
    return store


def build_runtime(settings: Settings, store: Store | None = None, *, transport=None) -> Runtime:
    store = store or open_store(settings)
    client = FortnoxClient(
        client_id=settings.fortnox_client_id, client_secret=settings.fortnox_client_secret,
        auth_url=settings.fortnox_auth_url, api_url=settings.fortnox_api_url,
        redirect_uri=settings.fortnox_redirect_uri, limiter=RateLimiter(*FORTNOX_RATE), transport=transport,
        timeout=settings.http_timeout_seconds,
    )
    tokens = TokenManager(store, client, lease=settings.refresh_lease_seconds)
    return Runtime(settings, store, client, tokens, Diagnoser(store, client, tokens, settings))
