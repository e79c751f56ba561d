"""Group commit: rows that arrive while one transaction is being written go together into the next.

Under load, recording a message (or a signed request) then costs a fraction of a commit. One bad row
must not fail its neighbours: when a batch's transaction fails, each of its rows is written again in a
transaction of its own, so only the row that cannot be written gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Row = TypeVar("Row")
Result = TypeVar("Result")

# Writes rows in one transaction of its own and returns one result per row, in order.
WriteRows = Callable[[list[Row]], Awaitable[list[Result]]]


class GroupCommit(Generic[Row, Result]):
    MAX_BATCH = 200

    def __init__(self, write: WriteRows, *, name: str) -> None:
        self._transaction = write
        self._name = name
        self._waiting: list[tuple[Row, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def submit(self, row: Row) -> Result:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:self.MAX_BATCH], self._waiting[self.MAX_BATCH:]
            try:
                results = await self._transaction([row for row, _ in batch])
            except Exception as error:
                if len(batch) == 1:
                    _settle(batch[0][1], error=error)
                    continue
                log.warning("%s: a batch of %d failed (%s: %s); writing its rows one by one",
                            self._name, len(batch), type(error).__name__, error)
                for row, future in batch:
                    try:
                        _settle(future, result=(await self._transaction([row]))[0])
                    except Exception as single_error:
                        _settle(future, error=single_error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result=result)


def _settle(future: asyncio.Future, *, result=None, error: BaseException | None = None) -> None:
    if future.done():  # the waiter was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
