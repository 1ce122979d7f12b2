"""Every Redis key Atelier uses, in one place.

What belongs to one user lives under ``atelier:user:<id>:`` (state, lock, pictures, job records,
results), so ``/forget`` is one scan of that prefix. Shared structures: the in-flight set (the
queue cap), the event streams, the duration estimates, and saq's own ``saq:*`` keys (jobs are
deleted from those as they finish).
"""

from __future__ import annotations

ROOT = "atelier"
LIMITS = f"{ROOT}:limits"  # the flood guard's moving windows (``limits`` package)
IN_FLIGHT = f"{ROOT}:in-flight"  # sorted set: job id -> deadline; its size is the queue cap's count
RESULTS = f"{ROOT}:results"  # stream of final events; consumer group FRONT_ENDS
PROGRESS = f"{ROOT}:progress"  # stream of started/progress events; consumer group FRONT_ENDS
FRONT_ENDS = "front-ends"
DURATIONS = f"{ROOT}:durations"  # hash: job kind -> recent render time (s), for ETAs
INBOXES = f"{ROOT}:inboxes"  # sorted set: user id -> when their oldest unhandled update was accepted
ALBUMS = f"{ROOT}:albums"  # sorted set: user id -> when their unfinished album last grew
FORGOTTEN = f"{ROOT}:forgotten"  # pub/sub channel: a user said /forget (front ends drop local copies)
COUNTS = f"{ROOT}:counts"  # hash: results delivered ("done", "failed"), jobs retried after a lost worker
QUEUES = {"fast": "atelier-fast", "hq": "atelier-hq"}  # saq queue names


def user_prefix(user_id: int) -> str:
    return f"{ROOT}:user:{user_id}:"


EVERY_STATE = f"{ROOT}:user:*:state"  # a pattern: one key per user with saved state


def state(user_id: int) -> str:
    return user_prefix(user_id) + "state"


def lock(user_id: int) -> str:
    return user_prefix(user_id) + "lock"


def inbox(user_id: int) -> str:
    """Sorted set: updates a front end accepted (answered 200) but has not handled yet, by update_id."""
    return user_prefix(user_id) + "inbox"


def last_update(user_id: int) -> str:
    """The highest update_id handled for the user: one at or below it is a repeat."""
    return user_prefix(user_id) + "last-update"


def active(user_id: int) -> str:
    """The user's one job in flight (its id)."""
    return user_prefix(user_id) + "active"


def job(user_id: int, job_id: str) -> str:
    """Hash: ``record`` (the versioned JSON job record), ``status`` and ``attempts``; it exists until
    the result has been delivered, which makes it the job's idempotency key."""
    return user_prefix(user_id) + f"job:{job_id}"


def picture(user_id: int, unique_id: str) -> str:
    """A picture's bytes, named by Telegram's file_unique_id: sent twice, stored once."""
    return user_prefix(user_id) + f"picture:{unique_id}"


def output(user_id: int, job_id: str) -> str:
    """The worker's PNG, until a front end has delivered it."""
    return user_prefix(user_id) + f"output:{job_id}"


def cancel(user_id: int, job_id: str) -> str:
    """Set by /cancel: "keep" (send the best image so far) or "drop"."""
    return user_prefix(user_id) + f"cancel:{job_id}"


def kept(user_id: int, job_id: str) -> str:
    """A delivered full-size result, for the "Full-size file" button, until the retention period ends."""
    return user_prefix(user_id) + f"kept:{job_id}"


def flood_warned(user_id: int, guard: str) -> str:
    return user_prefix(user_id) + f"flood-warned:{guard}"
