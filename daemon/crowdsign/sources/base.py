"""The interface every frame source implements.

A source is opened once, asked for frames one at a time, and closed. A frame
is handed out inside a `with` block because on the Pi it is a view of a
camera buffer that must go back to the camera when the block ends; nothing
may keep a reference to it afterwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Optional

from crowdsign.frames import Frame


class SourceError(Exception):
    """The source failed (device gone, file unreadable): reopen it later."""


class SourceExhausted(Exception):
    """A finite source (a replay without looping) has no more frames."""


class FrameSource(ABC):
    """A camera or a recording that yields frames.

    `describe()` names the source for logs (`replay:/path/x.avi`).
    `capture(timeout)` returns a context manager yielding the next Frame, or
    None if no frame arrived within `timeout` seconds (a stall).
    It raises SourceError when the source broke, SourceExhausted at the end
    of a finite recording.
    """

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def capture(self, timeout: float) -> AbstractContextManager[Optional[Frame]]: ...

    @abstractmethod
    def describe(self) -> str: ...

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
