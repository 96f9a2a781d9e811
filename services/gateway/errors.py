"""What the gateway's domain refuses, in its own terms: no HTTP here.

Domain code (submitting a job, its dependencies, deliveries, cancel and delete, dead-letter
replay, event-stream admission) raises these, often from inside a store transaction (the
transaction rolls back). The error middleware (problems.py, `problem_of`) is the one place
that turns each into an answer: its status, headers and problem members.
"""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """A request the domain refuses; `str()` is the sentence the client reads."""


@dataclass(eq=False)
class JobNotFound(DomainError):
    job_id: str

    def __str__(self) -> str:
        return f"no job {self.job_id!r}"


@dataclass(eq=False)
class ScheduleNotFound(DomainError):
    schedule_id: str

    def __str__(self) -> str:
        return f"no schedule {self.schedule_id!r}"


@dataclass(eq=False)
class QuotaExceeded(DomainError):
    """The tenant's jobs of today would take more leads than its daily quota."""

    quota: int
    used: int
    needed: int
    retry_after_s: int  # until the quota's day ends (UTC midnight)

    def __str__(self) -> str:
        return (
            f"daily quota of {self.quota} leads: {self.used} used today, "
            f"this job needs {self.needed}"
        )


@dataclass(eq=False)
class IdempotencyConflict(DomainError):
    job_id: str  # the job the key made first

    def __str__(self) -> str:
        return "this Idempotency-Key was used with a different request body"


@dataclass(eq=False)
class CsvInUse(DomainError):
    index: int  # the destination's position in the request
    file_name: str
    job_id: str  # the unfinished job writing that file

    def __str__(self) -> str:
        return (
            f"destinations[{self.index}].name: {self.file_name} is being written by job"
            f" {self.job_id}"
        )


@dataclass(eq=False)
class BadDependency(DomainError):
    """`depends_on` names no job (`missing`), a job that is not a scrape, or one that will
    never complete."""

    reason: str
    missing: bool = False

    def __str__(self) -> str:
        return self.reason


@dataclass(eq=False)
class JobFinished(DomainError):
    """The job is already terminal: nothing left to cancel."""

    job_id: str
    state: str

    def __str__(self) -> str:
        return f"job {self.job_id} is already {self.state}"


@dataclass(eq=False)
class NothingToCancel(DomainError):
    """A completed job without pending webhook deliveries."""

    job_id: str

    def __str__(self) -> str:
        return f"job {self.job_id} is already completed and has no pending deliveries"


@dataclass(eq=False)
class JobNotPaused(DomainError):
    """Only a paused job may be resumed."""

    job_id: str
    state: str

    def __str__(self) -> str:
        return f"job {self.job_id} is {self.state}, not paused: nothing to resume"


@dataclass(eq=False)
class JobNotFinished(DomainError):
    """Only a finished job's leads may be run again."""

    job_id: str
    state: str

    def __str__(self) -> str:
        return f"job {self.job_id} is {self.state}: only a finished job can be run again"


@dataclass(eq=False)
class JobUnfinished(DomainError):
    """Only a finished job may be deleted."""

    job_id: str
    state: str

    def __str__(self) -> str:
        return f"job {self.job_id} is {self.state}; cancel it before deleting it"


@dataclass(eq=False)
class DestinationNotFound(DomainError):
    job_id: str
    index: str

    def __str__(self) -> str:
        return f"job {self.job_id} has no destination {self.index}"


@dataclass(eq=False)
class NotAWebhook(DomainError):
    """Only a webhook destination has a secret to rotate."""

    job_id: str
    index: int
    kind: str

    def __str__(self) -> str:
        return (
            f"job {self.job_id} has no webhook destination {self.index}: "
            f"it is a {self.kind} destination"
        )


class NoParkedDeadLetters(DomainError):
    def __str__(self) -> str:
        return "no parked dead letters match"


@dataclass(eq=False)
class NotSent(DomainError):
    """The broker did not take what the request had to send, so nothing changed (or the
    job that was being submitted failed, `job_id`); the client may retry."""

    reason: str
    job_id: str | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass(eq=False)
class TooManyStreams(DomainError):
    """An event-stream cap is reached (`cap`: "total" or "tenant")."""

    cap: str
    held: int
    retry_after_s: int  # until the first of those streams reaches its lifetime

    def __str__(self) -> str:
        if self.cap == "total":
            detail = (
                f"this gateway has {self.held} event streams open, the most "
                "LEADFLOW_SSE_MAX_STREAMS allows"
            )
        else:
            detail = (
                f"your tenant has {self.held} event streams open on this gateway, the most "
                "LEADFLOW_SSE_MAX_STREAMS_PER_TENANT allows; close one"
            )
        return f"{detail}; retry after {self.retry_after_s} s"
