"""A minimal, fast webhook receiver for the benchmarks: answers 204 to every POST.

Run as its own process so its CPU is not the measured process's: ``python bench/receiver.py PORT``.
"""

from __future__ import annotations

import sys

import uvicorn


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def, type-arg]
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
