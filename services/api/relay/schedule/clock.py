"""Time, injected: the system's in production, a manual one in tests."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def wait(self, event: asyncio.Event, until: datetime) -> None:
        """Return when `event` is set or the clock reaches `until`."""
        seconds = max(0.0, (until - self.now()).total_seconds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)


class ManualClock(Clock):
    """A clock that moves only when a test moves it."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def advance(self, seconds: float) -> None:
        await self.set(self._now + timedelta(seconds=seconds))

    async def set(self, moment: datetime) -> None:
        self._now = moment
        async with self._moved:
            self._moved.notify_all()

    async def wait(self, event: asyncio.Event, until: datetime) -> None:
        event_waiter = asyncio.ensure_future(event.wait())
        try:
            while not event.is_set() and self._now < until:
                clock_waiter = asyncio.ensure_future(self._wait_moved())
                await asyncio.wait(
                    {event_waiter, clock_waiter}, return_when=asyncio.FIRST_COMPLETED
                )
                clock_waiter.cancel()
        finally:
            event_waiter.cancel()

    async def _wait_moved(self) -> None:
        async with self._moved:
            await self._moved.wait()


class ScaledClock(Clock):
    """Time that runs `rate` times faster than real time from `epoch` on.

    For tests and demonstrations that need many real fires quickly across
    several relay processes: every relay given the same epoch and rate agrees
    on the time.
    """

    def __init__(self, epoch: datetime, rate: float) -> None:
        self.epoch = epoch
        self.rate = rate

    def now(self) -> datetime:
        real = datetime.now(UTC)
        return self.epoch + (real - self.epoch) * self.rate

    async def wait(self, event: asyncio.Event, until: datetime) -> None:
        seconds = max(0.0, (until - self.now()).total_seconds() / self.rate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)
