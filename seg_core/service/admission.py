"""Admission control: a bounded number of heavy jobs at once, the rest waiting in order.

Decoding a 48-megapixel photo and running a model on it takes hundreds of MB
for a few seconds. Ten such uploads at the same moment would all hold that at
once; with an :class:`Admission` gate only ``limit`` of them run and the others
wait first come, first served, holding nothing but their upload. A waiter can
learn how many are ahead of it (for a "waiting, 2 ahead" status), give up after
a timeout, or be refused at once when too many already wait (the HTTP API's
503).

A job may cost more than one slot: :func:`photo_cost` counts a photo of up
to :data:`PIXELS_PER_SLOT` as one and a 48-megapixel one as two, so with the
default limit two phone photos run together but a 48-megapixel photo runs
alone (it needs about 530 MB while it is analysed).

The dashboard's limit is a setting: ``WINGMASK_MAX_JOBS`` (default
:data:`DEFAULT_MAX_JOBS`), shared by every session through
:func:`process_admission`.

    gate = process_admission()
    with gate.slot(photo_cost(data), on_wait=lambda ahead: status.info(f"Waiting, {ahead} ahead")):
        analysis = analyse_compact(data, predictor)
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field

from PIL import Image

MAX_JOBS_ENV = "WINGMASK_MAX_JOBS"
#: Heavy jobs at once per process: one per core of a small 2-core server.
DEFAULT_MAX_JOBS = 2
#: How often a waiting caller re-reads its place in the queue for ``on_wait``.
POLL_S = 0.25
#: Photos up to this many pixels cost one slot; larger ones one more per started 25 megapixels.
PIXELS_PER_SLOT = 25_000_000


class AdmissionSettingError(ValueError):
    """The job limit setting is not a whole number of at least 1; the message says which value was given."""


class Busy(RuntimeError):
    """Refused at once: ``max_waiting`` callers already wait."""


class AdmissionTimeout(TimeoutError):
    """Not admitted within the timeout; the caller has left the queue."""


def max_jobs(environ: Mapping[str, str] = os.environ) -> int:
    """The job limit from ``WINGMASK_MAX_JOBS`` (default :data:`DEFAULT_MAX_JOBS`).

    Raises:
        AdmissionSettingError: the variable is set but is not a whole number of at least 1.
    """
    raw = environ.get(MAX_JOBS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_JOBS
    if not raw.isdigit() or int(raw) < 1:
        raise AdmissionSettingError(f"{MAX_JOBS_ENV}={raw!r} is not a whole number of jobs (1 or more)")
    return int(raw)


def photo_cost(data: bytes) -> int:
    """Slots that analysing the encoded photo ``data`` takes: one per started :data:`PIXELS_PER_SLOT`.

    Only the header is read. A file whose size cannot be read costs one: its
    decoding fails fast and reports why.
    """
    try:
        with Image.open(io.BytesIO(data)) as photo:
            pixels = photo.width * photo.height
    except Exception:  # any unreadable header; load_image explains it later
        return 1
    return max(1, math.ceil(pixels / PIXELS_PER_SLOT))


@dataclass(eq=False)
class Ticket:
    """One caller's place: waiting in the queue, then running once ``admitted``."""

    number: int
    wake: Callable[[], None]
    cost: int = 1
    queued_at: float = field(default_factory=time.monotonic)
    admitted: bool = False
    admitted_at: float | None = None

    @property
    def waited_s(self) -> float:
        """Seconds spent waiting (so far, while still waiting)."""
        return (self.admitted_at or time.monotonic()) - self.queued_at


@dataclass(frozen=True)
class AdmissionStats:
    """A snapshot of a gate.

    Attributes:
        limit: slots.
        used: slots taken now.
        running: jobs running now.
        waiting: callers waiting now.
        admitted: callers admitted since creation.
        refused: callers refused at once (:class:`Busy`).
        timed_out: callers that gave up waiting (:class:`AdmissionTimeout`).
    """

    limit: int
    used: int
    running: int
    waiting: int
    admitted: int
    refused: int
    timed_out: int


class Admission:
    """At most ``limit`` slots in use; later callers wait in first-come, first-served order.

    Each job takes ``cost`` slots (1 unless said otherwise; at most ``limit``).
    Freed slots go straight to the longest waiters, so a newcomer never
    overtakes the queue, and a big job at the head is not starved by small
    ones behind it. Works from threads (:meth:`slot`) and from an asyncio
    event loop (:meth:`async_slot`) on the same gate.

    Args:
        limit: slots (at least 1): the jobs of cost 1 that may run at once.
        max_waiting: callers allowed to wait; one more is refused with
            :class:`Busy` at once. None: no bound.
    """

    def __init__(self, limit: int, max_waiting: int | None = None):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if max_waiting is not None and max_waiting < 0:
            raise ValueError(f"max_waiting must be 0 or more, got {max_waiting}")
        self.limit, self.max_waiting = limit, max_waiting
        self._lock = threading.Lock()
        self._queue: deque[Ticket] = deque()
        self._used = self._running = 0
        self._numbers = itertools.count(1)
        self._admitted = self._refused = self._timed_out = 0

    def ahead(self, ticket: Ticket) -> int:
        """How many callers will be admitted before ``ticket`` (0 once it is admitted or next)."""
        with self._lock:
            if ticket.admitted:
                return 0
            try:
                return self._queue.index(ticket)
            except ValueError:
                return 0

    def stats(self) -> AdmissionStats:
        with self._lock:
            return AdmissionStats(
                self.limit,
                self._used,
                self._running,
                len(self._queue),
                self._admitted,
                self._refused,
                self._timed_out,
            )

    @contextlib.contextmanager
    def slot(
        self,
        cost: int = 1,
        timeout: float | None = None,
        on_wait: Callable[[int], None] | None = None,
        poll_s: float = POLL_S,
    ) -> Iterator[Ticket]:
        """Hold one slot for the ``with`` block, waiting for it in order if all are taken.

        Args:
            cost: slots the job takes (capped at ``limit``), e.g. :func:`photo_cost`.
            timeout: seconds to wait at most (None: as long as it takes).
            on_wait: called, in the caller's thread, with the number of callers
                ahead when the caller starts waiting and whenever that number
                changes; not called when a slot is free at once.
            poll_s: how often the place in the queue is re-read for ``on_wait``.

        Raises:
            Busy: ``max_waiting`` callers already wait.
            AdmissionTimeout: no slot within ``timeout``.
        """
        woken = threading.Event()
        ticket = self._enter(woken.set, cost)
        try:
            self._wait(ticket, woken, timeout, on_wait, poll_s)
        except BaseException:  # a timeout, or the caller stopped (e.g. a Streamlit rerun) while waiting
            self._leave(ticket)
            raise
        try:
            yield ticket
        finally:
            self._leave(ticket)

    @contextlib.asynccontextmanager
    async def async_slot(self, cost: int = 1, timeout: float | None = None) -> AsyncIterator[Ticket]:
        """:meth:`slot` for coroutines: waits without blocking the event loop.

        Raises:
            Busy: ``max_waiting`` callers already wait.
            AdmissionTimeout: no slot within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        admitted: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not admitted.done():
                admitted.set_result(None)

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed (server shutting down): nobody waits
                loop.call_soon_threadsafe(settle)

        ticket = self._enter(wake, cost)
        try:
            if not ticket.admitted:
                await asyncio.wait_for(admitted, timeout)
        except BaseException as exc:  # a timeout, or the request was cancelled while waiting
            self._leave(ticket)
            if isinstance(exc, TimeoutError):
                with self._lock:
                    self._timed_out += 1
                raise AdmissionTimeout(f"no free slot within {timeout:g} s") from exc
            raise
        try:
            yield ticket
        finally:
            self._leave(ticket)

    def _enter(self, wake: Callable[[], None], cost: int) -> Ticket:
        with self._lock:
            ticket = Ticket(next(self._numbers), wake, min(max(1, cost), self.limit))
            if self._used + ticket.cost <= self.limit and not self._queue:
                self._admit(ticket)
                return ticket
            if self.max_waiting is not None and len(self._queue) >= self.max_waiting:
                self._refused += 1
                raise Busy(f"{self._running} jobs run and {len(self._queue)} wait; try again shortly")
            self._queue.append(ticket)
            return ticket

    def _admit(self, ticket: Ticket) -> None:
        """Give ``ticket`` its slots (caller holds the lock)."""
        self._used += ticket.cost
        self._running += 1
        self._admitted += 1
        ticket.admitted, ticket.admitted_at = True, time.monotonic()

    def _leave(self, ticket: Ticket) -> None:
        """Free ``ticket``'s slots for the longest waiters, or take ``ticket`` out of the queue."""
        with self._lock:
            if not ticket.admitted:
                with contextlib.suppress(ValueError):
                    self._queue.remove(ticket)
                # Leaving may unblock those behind a big job that could not fit yet.
                self._admit_waiters()
                return
            ticket.admitted = False
            self._used -= ticket.cost
            self._running -= 1
            self._admit_waiters()

    def _admit_waiters(self) -> None:
        """Admit waiters from the head of the queue while their slots are free (caller holds the lock)."""
        while self._queue and self._used + self._queue[0].cost <= self.limit:
            following = self._queue.popleft()
            self._admit(following)
            following.wake()

    def _wait(
        self,
        ticket: Ticket,
        woken: threading.Event,
        timeout: float | None,
        on_wait: Callable[[int], None] | None,
        poll_s: float,
    ) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        told = None
        while not ticket.admitted:
            if on_wait is not None:
                ahead = self.ahead(ticket)
                if ahead != told and not ticket.admitted:
                    on_wait(ahead)
                    told = ahead
            left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if left <= 0:
                with self._lock:
                    if ticket.admitted:
                        return
                    self._timed_out += 1
                raise AdmissionTimeout(f"no free slot within {timeout:g} s")
            woken.wait(left)


_PROCESS_ADMISSION: Admission | None = None
_PROCESS_ADMISSION_LOCK = threading.Lock()


def process_admission() -> Admission:
    """The one gate of this process, with the ``WINGMASK_MAX_JOBS`` limit (read on first use) and no queue bound.

    Raises:
        AdmissionSettingError: the setting is not a whole number of at least 1.
    """
    global _PROCESS_ADMISSION
    with _PROCESS_ADMISSION_LOCK:
        if _PROCESS_ADMISSION is None:
            _PROCESS_ADMISSION = Admission(max_jobs())
        return _PROCESS_ADMISSION
