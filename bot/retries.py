"""Retrying Telegram calls only when a retry cannot make the user see something twice."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

T = TypeVar("T")

# The request never reached Telegram: no connection, or none free in the pool.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def retry_after_seconds(exc: RetryAfter) -> float:
    """PTB gives ``retry_after`` as seconds (deprecated, with a warning) or as a timedelta."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        delay = exc.retry_after
    return delay.total_seconds() if hasattr(delay, "total_seconds") else float(delay)


def surely_not_done(exc: NetworkError) -> bool:
    """Telegram answered with an error status (PTB raises with no transport error as the cause), or
    the request never left. A time-out or a connection lost mid-answer is neither."""
    cause = exc.__cause__
    return cause is None or isinstance(cause, (TelegramError, *_NEVER_SENT))


async def with_retries(call: Callable[[], Awaitable[T]], idempotent: bool, attempts: int = 4) -> T:
    """Retry what surely did not take effect (a 429, a 5xx answer, a connection never made), and
    anything idempotent.

    A time-out or a connection dropped mid-answer is ambiguous: Telegram may have acted on the
    request. Only an idempotent call (an edit, a download) is repeated after one; a send is not,
    or the user gets it twice.
    """
    for attempt in range(attempts):
        try:
            return await call()
        except RetryAfter as exc:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(retry_after_seconds(exc))
        except NetworkError as exc:  # TimedOut included
            retryable = not isinstance(exc, BadRequest) and (idempotent or surely_not_done(exc))
            if attempt == attempts - 1 or not retryable:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")
