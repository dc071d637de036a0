"""Fixtures several test files share."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def pty_pair():
    """(master fd, slave path) of a pseudo-terminal: what is under test opens the
    slave's path as its serial port, the test reads and writes the master."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)
