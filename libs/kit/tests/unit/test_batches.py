"""Work gathered off the request path: handed on at a count, after a delay, or at flush;
dropped on discard."""

from __future__ import annotations

import asyncio

from flotilla_kit.batches import Batched


def test_without_a_running_loop_each_item_goes_at_once() -> None:
    emitted: list[list[int]] = []
    batched = Batched(emitted.append, flush_after_s=60, batch=3)
    batched.add(1)  # no running loop (a unit test): at once
    assert emitted == [[1]]


async def test_a_batch_goes_when_full_or_when_its_delay_is_over() -> None:
    emitted: list[list[int]] = []
    gone = asyncio.Event()

    def emit(items: list[int]) -> None:
        emitted.append(items)
        gone.set()

    batched = Batched(emit, flush_after_s=0.01, batch=3)
    for item in (1, 2, 3):
        batched.add(item)
    assert emitted == [[1, 2, 3]]  # full: at once
    gone.clear()
    batched.add(4)
    assert emitted == [[1, 2, 3]]  # waits for its delay
    async with asyncio.timeout(5):
        await gone.wait()
    assert emitted == [[1, 2, 3], [4]]


async def test_discard_drops_what_has_gathered_and_cancels_its_flush() -> None:
    emitted: list[list[int]] = []
    batched = Batched(emitted.append, flush_after_s=0.01, batch=100)
    batched.add(1)
    batched.discard()
    batched.flush()
    await asyncio.sleep(0.05)  # past the delay the discarded batch had: nothing may come
    assert emitted == []
