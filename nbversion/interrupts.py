"""Hold Ctrl-C back for the few moments that must not be cut in two.

A restore renames its staged files into place and then assigns the variables; a snapshot
commits its catalog row. An interrupt in the middle of such a step would leave half of it
done, so :func:`deferred` records a SIGINT that arrives meanwhile and raises the
``KeyboardInterrupt`` right after the step, when everything is consistent again. Everything
slow (hashing, writing, reading) runs outside it and stays interruptible.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def deferred() -> Iterator[None]:
    """Run the block to its end even if SIGINT arrives; then act on the SIGINT as usual.

    Only the main thread receives signals, so elsewhere (and where Python does not own the
    SIGINT handler) this is a plain block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler not installed from Python: leave it alone
        yield
        return
    received: list[tuple[int, FrameType | None]] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(*received[0])  # the default handler raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt
