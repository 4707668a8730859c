"""The thread pool of a command's blocking work, drained before the command says it stopped.

``asyncio.to_thread`` (store calls, file appends, metrics scrapes) runs work in the event
loop's default executor. The daemon installs its own for as long as it runs, and on the way
out waits for every call still running in it and for its threads to end: once ``stopped`` is
logged no store call is left in a thread, and the interpreter has no thread to wait for at
exit. The loop gets a fresh default executor afterwards, so that whoever runs the loop next
(a test, the demo's simulator) can go on using ``to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

THREAD_PREFIX = "poller-io"


@contextlib.asynccontextmanager
async def owned() -> AsyncIterator[ThreadPoolExecutor]:
    """Make a new pool the running loop's default executor; drain it on the way out."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(thread_name_prefix=THREAD_PREFIX)
    loop.set_default_executor(pool)
    try:
        yield pool
    finally:
        loop.set_default_executor(ThreadPoolExecutor())
        await drain(pool)


async def drain(pool: ThreadPoolExecutor) -> None:
    """Wait, without blocking the loop, until every call in ``pool`` ended and its threads too."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def join() -> None:
        pool.shutdown(wait=True)
        loop.call_soon_threadsafe(_finish, done)

    # a daemon thread: it only waits, and it is gone right after it says so
    threading.Thread(target=join, name=f"{THREAD_PREFIX}-drain", daemon=True).start()
    await asyncio.shield(done)


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
