"""Dynamic batching: concurrent requests' items grouped into one call of a batch function.

    request ─► submit(items) ─► pending ─┐  up to max_batch_size items, or max_wait_s after the first
    request ─► submit(items) ─► pending ─┼─► run(all items) in the worker thread ─► each request its slice
    request ─► submit(items) ─► pending ─┘

The batch function runs in a one-thread executor shared by every model, so the event loop stays free and one
forward pass at a time gets all of torch's intra-op threads. If a batch fails, each request in it is run alone,
so a request that breaks the model fails by itself and never takes others down with it.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable, Sequence


class Overloaded(RuntimeError):
    """The route's queue is full (answered 503)."""


class TimedOut(RuntimeError):
    """A request waited and ran longer than its timeout (answered 503)."""


@dataclass
class _Job:
    items: Sequence[Any]
    future: asyncio.Future


class Batcher:
    """Groups items submitted concurrently into calls of `run(items) -> results` (one result per item, in
    order), at most `max_batch_size` items a call, waiting at most `max_wait_s` for a batch to fill."""

    def __init__(self, run: Callable[[list], list], *, executor: Executor, max_batch_size: int, max_wait_s: float,
                 max_queue: int) -> None:
        self.run, self.executor = run, executor
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self._pending: list[_Job] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0  # calls of run, for /v1/models and the benchmarks

    def start(self) -> None:
        """Start grouping (inside the running event loop)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        """Stop grouping; requests still waiting get Overloaded."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(Overloaded("the server is shutting down"))
        self._pending.clear()

    def queued(self) -> int:
        """Items waiting for a batch."""
        return sum(len(j.items) for j in self._pending if not j.future.done())

    async def submit(self, items: Sequence[Any], timeout: float) -> list:
        """The results for `items`, computed in a batch with whatever else is waiting."""
        if self._task is None or self._task.done():
            raise Overloaded("the server is not accepting work (starting or shutting down)")
        waiting = self.queued()
        if waiting and waiting + len(items) > self.max_queue:
            raise Overloaded(f"{waiting} texts are queued on this route (max_queue {self.max_queue}); retry later")
        job = _Job(list(items), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wake.set()
        try:
            return await asyncio.wait_for(job.future, timeout)  # cancels the job: a batch not yet run skips it
        except asyncio.TimeoutError:
            raise TimedOut(f"no answer within {timeout:g} s (request_timeout); the server is busy") from None

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._pending = [j for j in self._pending if not j.future.done()]
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = loop.time() + self.max_wait_s
            while self.queued() < self.max_batch_size and (left := deadline - loop.time()) > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch, size = [], 0
            while self._pending:
                job = self._pending[0]
                if not job.future.done():
                    if batch and size + len(job.items) > self.max_batch_size:
                        break
                    batch.append(job)
                    size += len(job.items)
                self._pending.pop(0)
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[_Job]) -> None:
        items = [x for job in batch for x in job.items]
        try:
            self.batches += 1
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, items)
            if len(results) != len(items):
                raise RuntimeError(f"the batch function gave {len(results)} results for {len(items)} items")
        except Exception as e:  # noqa: BLE001 - handed to the request that caused it
            if len(batch) > 1:  # find the culprit: each request alone
                for job in batch:
                    if not job.future.done():
                        await self._run([job])
            elif not batch[0].future.done():
                batch[0].future.set_exception(e)
            return
        at = 0
        for job in batch:
            if not job.future.done():  # timed out meanwhile
                job.future.set_result(results[at:at + len(job.items)])
            at += len(job.items)
