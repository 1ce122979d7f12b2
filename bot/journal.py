"""The job journal: every job is on disk from the moment it is accepted until its result is sent.

Status ``queued`` or ``running`` is restored as queued on the next start; ``delivering`` carries the
final event (the result file is beside the job's inputs), so a restart sends it without re-rendering.
A row is deleted only after the result reached the user, so a kill at any moment loses nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from bot.jobs import JobEvent, RenderJob
from bot.storage import Database

Status = Literal["queued", "running", "delivering"]


@dataclass(frozen=True)
class JournalEntry:
    job: RenderJob
    status: Status
    outcome: JobEvent | None


class JobJournal:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def add(self, job: RenderJob) -> None:
        record = json.dumps(job.to_record())
        await self.database.run(
            lambda db: db.execute(
                "INSERT INTO jobs (job_id, user_id, status, record) VALUES (?, ?, 'queued', ?)",
                (job.job_id, job.user_id, record),
            )
        )

    async def update(self, job: RenderJob, status: Status, outcome: JobEvent | None = None) -> None:
        """Record the job's new status (and its meta, e.g. the status message id)."""
        record = json.dumps(job.to_record())
        outcome_text = outcome.outcome_record() if outcome else None
        await self.database.run(
            lambda db: db.execute(
                "UPDATE jobs SET status = ?, record = ?, outcome = ? WHERE job_id = ?",
                (status, record, outcome_text, job.job_id),
            )
        )

    async def remove(self, job_id: str) -> None:
        await self.database.run(lambda db: db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)))

    async def load(self) -> list[JournalEntry]:
        rows = await self.database.run(
            lambda db: db.execute("SELECT record, status, outcome FROM jobs ORDER BY seq").fetchall()
        )
        entries = []
        for record, status, outcome in rows:
            job = RenderJob.from_record(json.loads(record))
            entries.append(
                JournalEntry(job, status, JobEvent.from_outcome(job, outcome) if outcome else None)
            )
        return entries
