"""One event-loop turn's parked entries: flushed once after the turn, cancelled ones left out, and no
request left waiting when the flush forgets one or raises."""

from __future__ import annotations

import asyncio

from service.loop_turn import TurnBatch, resolve


def test_a_turn_is_flushed_once_without_its_cancelled_requests() -> None:
    flushed: list[list[int]] = []

    def flush(parked: list[tuple[int, asyncio.Future[int]]]) -> None:
        flushed.append([entry for entry, _ in parked])
        for entry, future in parked:
            resolve(future, entry * 10)

    turn: TurnBatch[int, int] = TurnBatch(flush)

    async def main() -> None:
        tasks = [asyncio.ensure_future(turn.wait(n)) for n in range(4)]
        await asyncio.sleep(0)
        tasks[2].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert done[:2] == [0, 10] and done[3] == 30 and isinstance(done[2], asyncio.CancelledError)
        assert await turn.wait(7) == 70  # the next turn: a flush of its own

    asyncio.run(main())
    assert flushed == [[0, 1, 3], [7]]


def test_requests_a_flush_leaves_unanswered_or_raises_on_are_failed() -> None:
    def forgetful(parked: list[tuple[int, asyncio.Future[int]]]) -> None:
        resolve(parked[0][1], 1)

    def broken(parked: list[tuple[int, asyncio.Future[int]]]) -> None:
        raise ValueError("flush broke")

    async def main() -> None:
        turn: TurnBatch[int, int] = TurnBatch(forgetful)
        first, second = await asyncio.gather(turn.wait(1), turn.wait(2), return_exceptions=True)
        assert first == 1 and isinstance(second, RuntimeError) and "unanswered" in str(second)
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, _context: None)  # the re-raised error is the loop's to log
        raising: TurnBatch[int, int] = TurnBatch(broken)
        answers = await asyncio.gather(raising.wait(1), raising.wait(2), return_exceptions=True)
        assert all(isinstance(a, ValueError) for a in answers)

    asyncio.run(main())
