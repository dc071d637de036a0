"""IBIS (VDV 300) platform and vehicle displays on a serial line.

IBIS ("Integriertes Bord-Informations-System", VDV-Schrift 300) is the
telegram protocol German-speaking transit uses for destination, line and
platform displays: 1200 baud, 7 data bits, even parity, 2 stop bits, and
plain ASCII telegrams, each

    <record><CR><P>

where the record starts with a lower-case letter naming the data record
(`l` line number, `zA` destination text, `aA` addressed text, ...), <CR> is
0x0D and <P> is a checksum byte: 0x7F XOR every byte of the telegram
including the CR (so every byte stays 7-bit).

The 7-bit character set has no umlauts; VDV 300 puts them on the ASCII
codes that national variants of ISO 646 used for them (ä { ö | ü } ß ~
Ä [ Ö \\ Ü ]). A literal one of those seven ASCII characters in our own
text would show as an umlaut, so it is sent as a look-alike instead
({ [ -> (, } ] -> ), | \\ -> /, ~ -> -). Anything else outside printable
ASCII becomes `?`.

Records sent (one or more per update, see IbisTelegramConfig):

    DS001   l + 3 digits                 l012
    DS003a  zA + n + text of n*16 chars   zA2<32 characters>
    DS021   aA + address + n + n*16 chars aA12<32 characters>

n and the address are VDV hex digits: 0-9 then : ; < = > ? for 10-15.

The line itself is driven by a `DeviceWorker` (own thread, queue of depth
one, reopen with backoff), as for the plain serial sink.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Sequence

from crowdsign.config import IbisOutputConfig, IbisTelegramConfig
from crowdsign.sinks.base import Update
from crowdsign.sinks.notice import NoticeCycle
from crowdsign.sinks.serial_line import SerialPortDevice
from crowdsign.sinks.template import TemplateError, render_template, sample_updates
from crowdsign.sinks.worker import DeviceSink, DeviceWorker

VDV_HEX = "0123456789:;<=>?"
"""VDV 300's hex digits: 0..15 as the ASCII characters 0x30..0x3F."""

UMLAUTS = {"ä": "{", "ö": "|", "ü": "}", "ß": "~", "Ä": "[", "Ö": "\\", "Ü": "]"}
_LOOKALIKES = {"{": "(", "[": "(", "}": ")", "]": ")", "|": "/", "\\": "/", "~": "-"}
TEXT_TYPES = ("DS003a", "DS021")
TELEGRAM_TYPES = ("DS001",) + TEXT_TYPES
BLOCK = 16


def ibis_text(text: str) -> str:
    """`text` in the IBIS display character set (7-bit, umlauts on {|}~[\\]).

    >>> ibis_text("Grün [A] Straße")
    'Gr}n (A) Stra~e'
    """
    out = []
    for ch in text:
        if ch in UMLAUTS:
            out.append(UMLAUTS[ch])
        elif ch in _LOOKALIKES:
            out.append(_LOOKALIKES[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        elif ch in "\r\n\t":
            out.append(" ")          # a CR inside would end the telegram early
        else:
            out.append("?")
    return "".join(out)


def checksum(data: bytes) -> int:
    """0x7F XOR every byte of `data` (the record and its CR)."""
    p = 0x7F
    for b in data:
        p ^= b
    return p


def frame(record: str) -> bytes:
    """A record (already in the IBIS character set) as sent: record, CR, checksum.

    >>> frame("l012")
    b'l012\\r-'
    """
    data = record.encode("ascii") + b"\r"
    return data + bytes([checksum(data)])


def record(telegram: IbisTelegramConfig, text: str) -> str:
    """The record for `text` under this telegram type (text not yet framed)."""
    if telegram.type == "DS001":
        digits = text.strip()
        if not (digits.isdigit() and digits.isascii() and 1 <= len(digits) <= 3):
            raise ValueError(f"DS001 sends a number of 1 to 3 digits, got {text!r}")
        return "l" + digits.zfill(3)
    if not 1 <= telegram.blocks <= 15 or not 0 <= telegram.address <= 15:
        raise ValueError(f"IBIS blocks must be 1..15 and address 0..15, got blocks "
                         f"{telegram.blocks}, address {telegram.address}")
    width = telegram.blocks * BLOCK
    body = ibis_text(text)[:width].ljust(width)
    if telegram.type == "DS003a":
        return "zA" + VDV_HEX[telegram.blocks] + body
    if telegram.type == "DS021":
        return "aA" + VDV_HEX[telegram.address] + VDV_HEX[telegram.blocks] + body
    raise ValueError(f"unknown IBIS telegram type {telegram.type!r}")


def telegram_text(telegram: IbisTelegramConfig, update: Update, notice: Optional[str]) -> str:
    """What one telegram says for `update`: the no-data text when the counts
    are stale, else the notice when it is due (text telegrams only), else
    the template filled in."""
    if update.stale:
        return telegram.no_data or render_template(telegram.template, update)
    if notice and telegram.type in TEXT_TYPES:
        return notice
    return render_template(telegram.template, update)


def encode_update(config: IbisOutputConfig, update: Update, notice_on: bool) -> bytes:
    """Every configured telegram for `update`, framed, one after the other."""
    notice = config.notice if notice_on else None
    return b"".join(frame(record(t, telegram_text(t, update, notice)))
                    for t in config.telegrams)


def check_telegram(telegram: IbisTelegramConfig, zones: Sequence[str], cars: Sequence[str],
                   notice: str) -> list[tuple[str, str]]:
    """(field, problem) pairs for one [[outputs.telegrams]] table: the type,
    address and blocks, and that the template (and no_data, and the notice)
    make a valid record on sample data, fresh and stale."""
    t = telegram
    if t.type not in TELEGRAM_TYPES:
        return [("type", f"must be one of {', '.join(TELEGRAM_TYPES)}, got {t.type!r}")]
    p: list[tuple[str, str]] = []
    if not 0 <= t.address <= 15:
        p.append(("address", f"must be 0..15, got {t.address}"))
    if not 1 <= t.blocks <= 15:
        p.append(("blocks", f"must be 1..15 (blocks of 16 characters), got {t.blocks}"))
    if p:
        return p
    if notice and t.type in TEXT_TYPES and len(notice) > t.blocks * BLOCK:
        p.append(("blocks", f"the notice has {len(notice)} characters; {t.blocks} blocks "
                            f"hold {t.blocks * BLOCK}: raise blocks or shorten the notice"))
    for update in sample_updates(zones, cars):
        try:
            record(t, telegram_text(t, update, None))
        except TemplateError as e:
            return p + [("template", str(e))]
        except ValueError as e:
            key = "no_data" if update.stale and t.no_data else "template"
            hint = " (set no_data for stale counts)" if update.stale and not t.no_data else ""
            return p + [(key, f"{e}{hint}")]
    return p


class IbisSink(DeviceSink):
    """Sends the configured IBIS telegrams for each update to a serial port.

    config: the [[outputs]] table (port, line settings, telegrams, notice,
            rate_hz, backoff, write timeout).
    log:    where the lost / back lines go.
    clock:  monotonic seconds, for the notice cycle.
    """

    def __init__(self, config: IbisOutputConfig, log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.device = SerialPortDevice(config, kind="ibis")
        self._notice = NoticeCycle(config.notice_every_s, config.notice_for_s, clock())
        self._clock = clock
        self._worker = DeviceWorker(
            self.device, lambda u: encode_update(config, u, self._notice.active(clock())),
            rate_hz=config.rate_hz, backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s, log=log, clock=clock)

