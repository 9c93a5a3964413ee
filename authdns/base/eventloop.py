"""Which asyncio event loop runs the server: the standard one, or uvloop when installed.

uvloop (libuv underneath) answered 10–40 % more queries per second than the standard
loop in this project's measurements (README, "Speed"); it is optional (the ``fast``
extra): ``auto`` takes it when it can be imported. Nothing else here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

LOOPS = ("auto", "asyncio", "uvloop")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(name: str) -> str:
    """``auto`` → ``uvloop`` when installed, else ``asyncio``; a named loop as it is."""
    if name == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    return name


def run(coroutine: Coroutine[Any, Any, int], name: str) -> int:
    """Run ``coroutine`` to completion on a new loop of kind ``name`` (asyncio or uvloop)."""
    factory = None
    if name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)
