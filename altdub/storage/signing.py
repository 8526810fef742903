"""HMAC-SHA256 signatures for local download URLs: bound to the key, the filename and the expiry."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

_EXPIRES = re.compile(r"[1-9][0-9]{0,11}")  # as signed: no leading zero, so one URL per expiry


class URLSigner:
    def __init__(self, secret: str, ttl: int) -> None:
        self._secret = secret.encode()
        self.ttl = ttl

    def digest(self, key: str, filename: str, expires: int) -> str:
        message = f"{key}\n{filename}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, key: str, filename: str, now: float | None = None) -> dict[str, str]:
        expires = int((now if now is not None else time.time()) + self.ttl)
        return {
            "filename": filename,
            "expires": str(expires),
            "signature": self.digest(key, filename, expires),
        }

    def verify(self, key: str, filename: str, expires: str, signature: str) -> bool:
        """True when the signature matches and has not expired."""
        if not _EXPIRES.fullmatch(expires):  # ASCII digits only: "²".isdigit() is True
            return False
        expected = self.digest(key, filename, int(expires))
        return hmac.compare_digest(expected, signature) and int(expires) >= time.time()
