"""Logging to journald with structured fields, or to stderr off systemd.

Under systemd (JOURNAL_STREAM set) and with systemd-python installed, records
go straight to journald, so `journalctl -u crowdsign -o json` shows fields such
as CROWDSIGN_TOTAL and CROWDSIGN_ZONE_<NAME> next to the message. Elsewhere
(a terminal, a test) a plain one-line format goes to stderr.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Mapping, Optional

LOGGER_NAME = "crowdsign"


def setup_logging(level: str = "info", *, force_stderr: bool = False) -> logging.Logger:
    """Configure the `crowdsign` logger once per process and return it."""
    log = logging.getLogger(LOGGER_NAME)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    handler: logging.Handler
    if not force_stderr and os.environ.get("JOURNAL_STREAM") and _journal_available():
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER="crowdsign")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("crowdsign %(levelname)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False
    return log


def _journal_available() -> bool:
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        return False
    return True


def zone_field(name: str) -> str:
    """The journal field for a zone: CROWDSIGN_ZONE_ plus the name in [A-Z0-9_]."""
    return "CROWDSIGN_ZONE_" + re.sub(r"[^A-Z0-9_]", "_", name.upper())


def summary_fields(total: Optional[float], zones: Mapping[str, Optional[float]],
                   fps: float, infer_ms: float) -> dict[str, str]:
    """Journal fields of a summary line; unknown counts are left out."""
    fields = {"CROWDSIGN_FPS": f"{fps:.2f}", "CROWDSIGN_INFER_MS": f"{infer_ms:.1f}"}
    if total is not None:
        fields["CROWDSIGN_TOTAL"] = f"{total:g}"
    for name, count in zones.items():
        if count is not None:
            fields[zone_field(name)] = f"{count:g}"
    return fields
