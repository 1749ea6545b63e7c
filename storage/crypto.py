"""Token encryption at rest: MultiFernet over ENCRYPTION_KEY (first key encrypts, every key decrypts)."""
from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CipherError(Exception):
    """A stored value could not be decrypted: corrupted, or written under a key that is no longer configured."""


class TokenCipher:
    def __init__(self, keys: str):
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ValueError("ENCRYPTION_KEY is empty")
        self._fernet = MultiFernet([Fernet(k) for k in parts])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except (InvalidToken, ValueError, TypeError, UnicodeError):
            raise CipherError("stored token cannot be decrypted with ENCRYPTION_KEY") from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the first key (for key rotation)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except (InvalidToken, ValueError, TypeError):
            raise CipherError("stored token cannot be decrypted with ENCRYPTION_KEY") from None
