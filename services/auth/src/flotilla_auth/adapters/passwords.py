"""Password hashing with argon2id (argon2-cffi), off the event loop."""

from __future__ import annotations

import asyncio
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["Argon2PasswordHasher"]


class Argon2PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile) unless told.

    Hashing takes a deliberate fraction of a second of CPU, so it runs in a worker thread:
    the event loop keeps serving other requests meanwhile.
    """

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher()
        # A hash of nothing anyone knows, made with the same parameters as real ones, so
        # checking a password of an unknown user costs what checking a real one costs.
        self._dummy_hash: str = self._hasher.hash(secrets.token_urlsafe(32))

    async def hash(self, password: str) -> str:
        hashed: str = await asyncio.to_thread(self._hasher.hash, password)
        return hashed

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        await asyncio.to_thread(self._verify, self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return bool(self._hasher.check_needs_rehash(password_hash))
        except InvalidHashError:
            return True

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False
