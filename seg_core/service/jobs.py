"""Long jobs in a background thread, one at a time, with progress, a log and cancelling.

A web page cannot wait minutes inside one request: a front end starts the
work here and polls its :class:`JobStatus` (the dashboard redraws a progress
bar every second). The work is any function of a :class:`JobContext`, through
which it reports progress, writes log lines and learns that it was cancelled;
evaluating an uploaded collection is one such job, fine-tuning could be another.

One job runs at a time per :class:`JobRunner`: a second :meth:`JobRunner.start`
while one runs is refused with :class:`JobBusyError`, so a burst of uploads
cannot start a burst of evaluations. The work should take an admission slot
(:mod:`seg_core.service.admission`) around each heavy step, so interactive
users keep their turns while it runs.

    job = process_jobs().start("Evaluate my-photos", work)
    status = process_jobs().status(job.id)   # state, done/total, message, log
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
#: Log lines a job keeps (the oldest go first).
LOG_LINES = 200
#: Finished jobs a runner remembers, so a page that polls late still learns how its job ended.
FINISHED_KEPT = 20


class JobBusyError(RuntimeError):
    """Another job is running; the message names it and how far it got."""


class JobCancelled(Exception):
    """Raised inside a job's work by :meth:`JobContext.progress` or :meth:`JobContext.check` once cancelled."""


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job.

    Attributes:
        id: the job's id (unique in its runner).
        name: what the job does, for people.
        state: ``running``, ``done``, ``failed`` or ``cancelled``.
        done, total: steps done and steps in all (``total`` 0 while unknown).
        message: what it is doing now (or how it ended).
        log: its log lines, oldest first.
        result: what the work returned (``done`` jobs).
        error: the exception that ended it (``failed`` jobs).
        started_at, finished_at: ``time.time()`` stamps (``finished_at`` None while running).
    """

    id: int
    name: str
    state: str
    done: int
    total: int
    message: str
    log: tuple[str, ...]
    result: Any = None
    error: BaseException | None = None
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def fraction(self) -> float:
        """Share of the steps done, 0 to 1 (0 while the total is unknown)."""
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.state != RUNNING


@dataclass
class _Job:
    id: int
    name: str
    state: str = RUNNING
    done: int = 0
    total: int = 0
    message: str = ""
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    result: Any = None
    error: BaseException | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class JobContext:
    """What a job's work sees: report progress, log, and check for a cancel request."""

    def __init__(self, job: _Job, lock: threading.Lock):
        self._job, self._lock = job, lock

    @property
    def cancelled(self) -> bool:
        """Whether someone asked the job to stop."""
        return self._job.cancel.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` when the job was asked to stop (call between steps)."""
        if self.cancelled:
            raise JobCancelled(f"{self._job.name} was cancelled")

    def progress(self, done: int, total: int, message: str | None = None) -> None:
        """Record ``done`` of ``total`` steps (and what is being done), then :meth:`check`."""
        with self._lock:
            self._job.done, self._job.total = done, total
            if message is not None:
                self._job.message = message
        self.check()

    def log(self, line: str) -> None:
        """Add a line to the job's log (kept in memory, the last :data:`LOG_LINES`)."""
        with self._lock:
            self._job.log.append(line)


class JobRunner:
    """Runs one job at a time in a daemon thread and keeps the statuses of recent jobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)

    def start(self, name: str, work: Callable[[JobContext], Any]) -> JobStatus:
        """Start ``work(context)`` in a background thread.

        Raises:
            JobBusyError: a job is running already.
        """
        with self._lock:
            running = next((j for j in self._jobs.values() if j.state == RUNNING), None)
            if running is not None:
                share = f", {running.done} of {running.total}" if running.total else ""
                raise JobBusyError(f"another job is running: {running.name} ({running.message or 'starting'}{share})")
            job = _Job(next(self._ids), name, message="starting")
            self._jobs[job.id] = job
            self._forget_old()
        thread = threading.Thread(target=self._run, args=(job, work), name=f"wingmask-job-{job.id}", daemon=True)
        thread.start()
        return self.status(job.id)

    def _run(self, job: _Job, work: Callable[[JobContext], Any]) -> None:
        context = JobContext(job, self._lock)
        try:
            result = work(context)
        except JobCancelled:
            self._finish(job, CANCELLED, "cancelled")
        except Exception as exc:  # the job's failure is its result: a front end shows it, the thread ends cleanly
            log.info("job %s (%s) failed: %s", job.id, job.name, exc, exc_info=exc)
            self._finish(job, FAILED, str(exc) or type(exc).__name__, error=exc)
        else:
            self._finish(job, DONE, "done", result=result)

    def _finish(
        self, job: _Job, state: str, message: str, result: Any = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            job.state, job.message, job.result, job.error = state, message, result, error
            job.finished_at = time.time()

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond :data:`FINISHED_KEPT` (caller holds the lock)."""
        finished = [j.id for j in self._jobs.values() if j.state != RUNNING]
        for job_id in finished[: max(0, len(finished) - FINISHED_KEPT)]:
            del self._jobs[job_id]

    def status(self, job_id: int) -> JobStatus | None:
        """A snapshot of the job, or None when this runner does not know it (any more)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            return JobStatus(
                job.id,
                job.name,
                job.state,
                job.done,
                job.total,
                job.message,
                tuple(job.log),
                job.result,
                job.error,
                job.started_at,
                job.finished_at,
            )

    def running(self) -> JobStatus | None:
        """The job running now, if any."""
        with self._lock:
            job_id = next((j.id for j in self._jobs.values() if j.state == RUNNING), None)
        return None if job_id is None else self.status(job_id)

    def cancel(self, job_id: int) -> bool:
        """Ask a running job to stop at its next step; False when it is not running."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state != RUNNING:
                return False
            job.cancel.set()
            job.message = "cancelling"
            return True

    def wait(self, job_id: int, timeout: float | None = None, poll_s: float = 0.05) -> JobStatus | None:
        """Block until the job has finished (or ``timeout`` seconds passed); its last status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        status = self.status(job_id)
        while status is not None and not status.finished and (deadline is None or time.monotonic() < deadline):
            time.sleep(poll_s)
            status = self.status(job_id)
        return status


_PROCESS_JOBS: JobRunner | None = None
_PROCESS_JOBS_LOCK = threading.Lock()


def process_jobs() -> JobRunner:
    """The one job runner of this process, shared by every session of the dashboard."""
    global _PROCESS_JOBS
    with _PROCESS_JOBS_LOCK:
        if _PROCESS_JOBS is None:
            _PROCESS_JOBS = JobRunner()
        return _PROCESS_JOBS
