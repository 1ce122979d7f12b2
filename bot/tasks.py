"""Stopping asyncio tasks for sure.

redis-py (8.1 on Python 3.11) now and then swallows a cancellation that lands while a command is
in flight: the task goes on as if nothing happened. Measured: about 1 in 25 cancels of a task
looping on ``GET``. A loop cancelled once could then run forever, and whoever awaits it hangs (a
render worker's job never finished that way). So: cancel, wait a moment, and cancel again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

RECANCEL_EVERY_S = 0.05


async def cancel_and_wait(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel the tasks and return once all of them have ended, cancelling again any that go on."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY_S)
