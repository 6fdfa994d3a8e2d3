"""Admission control: the limit holds under threads, first come first served, positions, timeouts, Busy."""

import asyncio
import io
import threading
import time

import pytest
from PIL import Image

from seg_core.service.admission import Admission, AdmissionSettingError, AdmissionTimeout, Busy, max_jobs, photo_cost

WAIT_S = 10


def wait_until(condition, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_the_limit_holds_under_threads():
    gate = Admission(3)
    running, peak, lock = [0], [0], threading.Lock()

    def job():
        with gate.slot():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.01)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert peak[0] == 3
    stats = gate.stats()
    assert (stats.running, stats.waiting, stats.admitted) == (0, 0, 24)


def test_waiters_are_admitted_in_arrival_order_and_learn_their_place():
    gate = Admission(1)
    order, places = [], {}
    release = threading.Event()

    def first():
        with gate.slot():
            release.wait(WAIT_S)

    def waiter(name: str):
        with gate.slot(on_wait=lambda ahead: places.setdefault(name, []).append(ahead), poll_s=0.01):
            order.append(name)

    holder = threading.Thread(target=first)
    holder.start()
    wait_until(lambda: gate.stats().running == 1)
    threads = []
    for number, name in enumerate("abcd"):
        threads.append(threading.Thread(target=waiter, args=(name,)))
        threads[-1].start()
        wait_until(lambda n=number: gate.stats().waiting == n + 1)
    # Each waiter was told its place on arrival.
    wait_until(lambda: all(name in places for name in "abcd"))
    assert [places[name][0] for name in "abcd"] == [0, 1, 2, 3]
    release.set()
    for thread in [holder, *threads]:
        thread.join(WAIT_S)
    assert order == list("abcd")
    # Places only ever go down as the jobs ahead are served.
    assert places["d"] == sorted(places["d"], reverse=True)


def test_a_newcomer_never_overtakes_the_queue():
    gate = Admission(1)
    release, order = threading.Event(), []

    def holder():
        with gate.slot():
            release.wait(WAIT_S)

    def job(name):
        with gate.slot():
            order.append(name)

    threads = [threading.Thread(target=holder), threading.Thread(target=job, args=("queued",))]
    threads[0].start()
    wait_until(lambda: gate.stats().running == 1)
    threads[1].start()
    wait_until(lambda: gate.stats().waiting == 1)
    release.set()
    threads[0].join(WAIT_S)
    # The freed slot went straight to the waiter, so a newcomer now waits behind it.
    threads.append(threading.Thread(target=job, args=("newcomer",)))
    threads[-1].start()
    for thread in threads:
        thread.join(WAIT_S)
    assert order == ["queued", "newcomer"]


def test_ahead_is_zero_for_an_admitted_ticket():
    gate = Admission(1)
    with gate.slot() as ticket:
        assert ticket.admitted and gate.ahead(ticket) == 0


def test_a_timeout_leaves_the_queue_and_frees_nothing_it_did_not_hold():
    gate = Admission(1)
    with gate.slot():
        started = time.monotonic()
        with pytest.raises(AdmissionTimeout), gate.slot(timeout=0.2):
            pytest.fail("admitted while the only slot was held")
        assert time.monotonic() - started >= 0.2
        assert gate.stats().waiting == 0 and gate.stats().running == 1
    assert gate.stats().running == 0 and gate.stats().timed_out == 1
    with gate.slot(timeout=0.2) as ticket:
        assert ticket.admitted


def test_an_error_in_on_wait_leaves_the_queue():
    gate = Admission(1)

    def stop(ahead):
        raise KeyboardInterrupt  # what a stopped caller (e.g. a Streamlit rerun) looks like from here

    with gate.slot():
        with pytest.raises(KeyboardInterrupt), gate.slot(on_wait=stop):
            pass
        assert gate.stats().waiting == 0
    assert gate.stats().running == 0


def test_an_error_inside_the_block_frees_the_slot():
    gate = Admission(1)
    with pytest.raises(ValueError), gate.slot():
        raise ValueError("job failed")
    assert gate.stats().running == 0


def test_callers_beyond_max_waiting_are_refused_at_once():
    gate = Admission(1, max_waiting=1)
    release = threading.Event()

    def occupy():
        with gate.slot():
            release.wait(WAIT_S)

    threads = [threading.Thread(target=occupy) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: gate.stats().running == 1 and gate.stats().waiting == 1)
    with pytest.raises(Busy), gate.slot():
        pass
    release.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert gate.stats().refused == 1 and gate.stats().admitted == 2


def test_async_slots_share_the_limit_and_order_with_threads():
    gate = Admission(1, max_waiting=5)
    order = []

    async def main():
        release = asyncio.Event()

        async def holder():
            async with gate.async_slot():
                await release.wait()

        async def job(name):
            async with gate.async_slot():
                order.append(name)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0.05)
        jobs = []
        for name in "abc":
            jobs.append(asyncio.create_task(job(name)))
            await asyncio.sleep(0.02)
        assert gate.stats().waiting == 3
        release.set()
        await asyncio.gather(first, *jobs)

    asyncio.run(main())
    assert order == list("abc") and gate.stats().running == 0


def test_async_timeout_and_cancellation_leave_the_queue():
    gate = Admission(1)

    async def main():
        async with gate.async_slot():
            with pytest.raises(AdmissionTimeout):
                async with gate.async_slot(timeout=0.1):
                    pytest.fail("admitted while the only slot was held")
            waiting = asyncio.create_task(gate.async_slot().__aenter__())
            await asyncio.sleep(0.05)
            assert gate.stats().waiting == 1
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert gate.stats().waiting == 0

    asyncio.run(main())
    assert gate.stats().running == 0 and gate.stats().timed_out == 1


def test_the_job_limit_setting():
    assert max_jobs({}) == 2
    assert max_jobs({"WINGMASK_MAX_JOBS": " 4 "}) == 4
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(AdmissionSettingError, match="WINGMASK_MAX_JOBS"):
            max_jobs({"WINGMASK_MAX_JOBS": bad})


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        Admission(0)
    with pytest.raises(ValueError):
        Admission(1, max_waiting=-1)


def test_a_big_job_waits_for_its_slots_and_nothing_overtakes_it():
    gate = Admission(2)
    order, release = [], threading.Event()

    def job(name, cost):
        with gate.slot(cost):
            order.append(name)
            if name.startswith("hold"):
                release.wait(WAIT_S)

    jobs = [("hold", 1), ("big", 2), ("small", 1)]
    threads = [threading.Thread(target=job, args=job_args) for job_args in jobs]
    threads[0].start()
    wait_until(lambda: gate.stats().used == 1)
    threads[1].start()
    wait_until(lambda: gate.stats().waiting == 1)
    # One slot is free, but the small job arrived after the big one, so it waits behind it.
    threads[2].start()
    wait_until(lambda: gate.stats().waiting == 2)
    assert order == ["hold"]
    release.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert order == ["hold", "big", "small"] and gate.stats().used == 0


def test_a_cost_over_the_limit_runs_alone_instead_of_never():
    gate = Admission(2)
    with gate.slot(5) as ticket:
        assert ticket.cost == 2 and gate.stats().used == 2


def test_a_big_waiter_that_times_out_lets_the_small_ones_behind_it_in():
    gate = Admission(2)
    outcome, small_admitted = [], threading.Event()

    def big():
        try:
            with gate.slot(2, timeout=0.5):
                outcome.append("admitted")
        except AdmissionTimeout:
            outcome.append("timed out")

    def small():
        with gate.slot(1):
            small_admitted.set()

    with gate.slot(1):
        threads = [threading.Thread(target=big), threading.Thread(target=small)]
        threads[0].start()
        wait_until(lambda: gate.stats().waiting == 1)
        threads[1].start()
        wait_until(lambda: gate.stats().waiting == 2 or small_admitted.is_set())
        # The free slot goes to the small job only once the big one ahead of it gives up.
        assert small_admitted.wait(WAIT_S) and outcome == ["timed out"]
    for thread in threads:
        thread.join(WAIT_S)


def photo_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def test_photo_cost_counts_started_25_megapixels_from_the_header():
    assert photo_cost(photo_bytes(100, 100)) == 1
    assert photo_cost(photo_bytes(5000, 5000)) == 1  # exactly 25 MP
    assert photo_cost(photo_bytes(5001, 5000)) == 2
    assert photo_cost(b"not a photo") == 1
    assert photo_cost(photo_bytes(8000, 6000)[:100]) == 2  # the header alone is enough
