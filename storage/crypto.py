"""Token encryption at rest: MultiFernet over ENCRYPTION_KEY (first key encrypts, every key decrypts)."""
from __future__ import annotations

import base64
import binascii

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Fernet token layout: version 0x80, 8-byte timestamp, 16-byte IV, AES-CBC blocks (16n, n >= 1), 32-byte HMAC.
_FERNET_OVERHEAD = 1 + 8 + 16 + 32


class CipherError(Exception):
    """A stored value could not be decrypted: corrupted, or written under a key that is no longer configured."""


def looks_like_fernet(ciphertext: str | None) -> bool:
    """Is this an intact Fernet token (whatever key wrote it)? A wrong key leaves tokens intact; corruption rarely does."""
    if not ciphertext:
        return False
    try:
        raw = base64.urlsafe_b64decode(ciphertext.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeError):
        return False
    body = len(raw) - _FERNET_OVERHEAD
    return raw[:1] == b"\x80" and body >= 16 and body % 16 == 0


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
