"""Persistence for fortnox-bot: tables, sessions, migrations and token encryption. Nothing else touches SQL."""
from storage.crypto import CipherError, TokenCipher
from storage.db import StoreUnavailable
from storage.store import Store

__all__ = ["Store", "TokenCipher", "CipherError", "StoreUnavailable"]
