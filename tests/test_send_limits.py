"""Telegram's send limits and retries: who goes first, what is never sent twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import httpx
import pytest
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from bot.ratelimit import BACKGROUND, PICTURE_ANSWER, REPLY, PriorityBucket, PriorityRateLimiter, answering
from bot.retries import with_retries

RATE = 50.0  # tokens a second: a drip every 20 ms keeps these tests short


async def _drain(bucket: PriorityBucket) -> None:
    while bucket.tokens >= 1:
        await bucket.acquire(REPLY)


def test_replies_are_served_before_picture_answers_before_background():
    async def scenario() -> list[str]:
        bucket = PriorityBucket(RATE, 1)
        await _drain(bucket)
        served: list[str] = []

        async def wait(name: str, priority: int) -> None:
            await bucket.acquire(priority)
            served.append(name)

        names = [("bg1", BACKGROUND), ("pic1", PICTURE_ANSWER), ("bg2", BACKGROUND), ("reply", REPLY)]
        await asyncio.gather(*(wait(name, priority) for name, priority in names))
        return served

    assert asyncio.run(scenario()) == ["reply", "pic1", "bg1", "bg2"]


def test_background_leaves_the_reserve_to_replies():
    async def scenario() -> tuple[float, float]:
        bucket = PriorityBucket(RATE, 1, reserve=3)
        await _drain(bucket)
        started = time.monotonic()
        await bucket.acquire(BACKGROUND)  # must wait for 4 tokens: 3 stay for replies
        background_wait = time.monotonic() - started
        replies_started = time.monotonic()
        for _ in range(3):
            await bucket.acquire(REPLY)
        return background_wait, time.monotonic() - replies_started

    background_wait, replies_wait = asyncio.run(scenario())
    assert background_wait >= 3.5 / RATE
    assert replies_wait < 1 / RATE  # the reserve was there: no reply waited for a drip


def test_a_cancelled_waiter_takes_no_token_and_does_not_block_the_queue():
    async def scenario() -> bool:
        bucket = PriorityBucket(RATE, 1)
        await _drain(bucket)
        doomed = asyncio.create_task(bucket.acquire(REPLY))
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.wait_for(bucket.acquire(BACKGROUND), timeout=1)
        return doomed.cancelled()

    assert asyncio.run(scenario())


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # PTB's own constructor
def test_retry_after_pauses_everyone_then_retries():
    async def scenario() -> tuple[int, float]:
        limiter, calls = PriorityRateLimiter(max_retries=2), []

        async def call() -> bool:
            calls.append(time.monotonic())
            if len(calls) == 1:
                raise RetryAfter(dt.timedelta(seconds=1))
            return True

        started = time.monotonic()
        await limiter.process_request(call, (), {}, "sendMessage", {"chat_id": 5}, None)
        return len(calls), calls[-1] - started

    count, retried_after = asyncio.run(scenario())
    assert count == 2 and retried_after >= 1.0


def test_calls_take_the_priority_of_the_update_being_handled():
    async def scenario() -> list[int]:
        limiter, order = PriorityRateLimiter(), []
        bucket = limiter._overall_bucket()
        await _drain(bucket)

        async def handle(priority: int, tag: int) -> None:
            answering.set(priority)  # what the update processor does for each update's task

            async def call() -> bool:
                order.append(tag)
                return True

            await limiter.process_request(call, (), {}, "sendMessage", {"chat_id": 7}, None)

        await asyncio.gather(handle(PICTURE_ANSWER, 1), handle(REPLY, 0), handle(PICTURE_ANSWER, 2))
        return order

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_private_chats_have_no_group_bucket_but_groups_do():
    limiter = PriorityRateLimiter()
    assert limiter._group_bucket(42) == [] and limiter._group_bucket("42") == []
    assert len(limiter._group_bucket(-100123)) == 1 and len(limiter._group_bucket("@channel")) == 1


# ---------------------------------------------------------------------------- retries
def _network_error(cause: Exception | None) -> NetworkError:
    """What PTB raises: transport failures carry the httpx error as their cause, error answers none."""
    if cause is None:
        return NetworkError("Internal Server Error")
    error = TimedOut() if isinstance(cause, httpx.TimeoutException) else NetworkError(str(cause))
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("cause", "idempotent", "attempts"),
    [
        (httpx.ReadError("reset mid-answer"), False, 1),  # Telegram may have sent it: never twice
        (httpx.ReadTimeout("slow"), False, 1),
        (httpx.ConnectError("refused"), False, 2),  # never left: safe to send again
        (httpx.PoolTimeout("pool full"), False, 2),
        (httpx.ReadError("reset mid-answer"), True, 2),  # an edit or a download: repeat freely
        (None, False, 2),  # Telegram answered 5xx: it did not take the message
    ],
)
def test_sends_are_repeated_only_when_surely_not_delivered(cause, idempotent, attempts):
    calls = []

    async def call() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise _network_error(cause)
        return "ok"

    async def scenario() -> None:
        await with_retries(call, idempotent=idempotent, attempts=3)

    if attempts == 1:
        with pytest.raises(NetworkError):
            asyncio.run(scenario())
    else:
        asyncio.run(scenario())
    assert len(calls) == attempts


def test_bad_requests_are_never_retried():
    calls = []

    async def call() -> None:
        calls.append(1)
        raise BadRequest("message is not modified")

    with pytest.raises(BadRequest):
        asyncio.run(with_retries(call, idempotent=True))
    assert len(calls) == 1
