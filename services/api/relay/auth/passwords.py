"""Password hashing with bcrypt, off the event loop."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import bcrypt

# bcrypt releases the GIL, so two threads use both cores while the loop serves
# other requests; more threads would only queue on the same cores.
HASHING_THREADS = 2
MAX_BYTES = 72


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._executor = ThreadPoolExecutor(HASHING_THREADS, "bcrypt")
        self._decoy_hash: bytes | None = None

    async def hash(self, password: str) -> str:
        hashed = await self._run(_hash, password.encode(), self.rounds)
        return hashed.decode()

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Check a password; with no hash (unknown user) spend the same time.

        No stored password is over bcrypt's 72 bytes, so a longer one cannot
        match; it still costs a check, so that its answer comes as slowly.
        """
        if len(password.encode()) > MAX_BYTES:
            password_hash = None
        if password_hash is None:
            attempt = password.encode()[:MAX_BYTES]
            await self._run(bcrypt.checkpw, attempt, await self._decoy())
            return False

        return await self._run(
            bcrypt.checkpw, password.encode(), password_hash.encode()
        )

    async def _decoy(self) -> bytes:
        if self._decoy_hash is None:
            self._decoy_hash = await self._run(_hash, b"decoy password", self.rounds)
        return self._decoy_hash

    async def _run(self, function, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _hash(password: bytes, rounds: int) -> bytes:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds))
