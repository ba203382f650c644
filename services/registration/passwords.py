"""Password hashing with Argon2id. Hashing costs tens of milliseconds of CPU by design,
so it runs in a worker thread (argon2-cffi releases the GIL) and never blocks the loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.registration.settings import RegistrationSettings


class Passwords:
    def __init__(self, *, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism)
        # Verified against when the login names nobody, so that "no such account" takes
        # as long as "wrong password" and logins cannot be probed by timing.
        self._decoy_hash = self._hasher.hash("decoy password never issued")

    @classmethod
    def from_settings(cls, settings: RegistrationSettings) -> Passwords:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_cost_kib=settings.argon2_memory_cost_kib,
            parallelism=settings.argon2_parallelism,
        )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def verify_decoy(self, password: str) -> None:
        await self.verify(self._decoy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
