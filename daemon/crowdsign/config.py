"""The daemon's configuration: TOML in, typed frozen dataclasses out.

The file is validated once, at load: every unknown key, wrong type or
impossible value becomes one problem line naming the file and the key
(`/etc/crowdsign/crowdsign.toml: [levels].window: must be >= 1, got 0`), and
all problems are reported together so a technician fixes them in one pass.
The dataclasses hold plain values only, never open devices: stages are built
from them afterwards.

Relative paths in the file (model, replay source) are relative to the
directory of the config file, so an example config works from any directory.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Debian bookworm has 3.11
    import tomli as tomllib

DEFAULT_CONFIG_PATH = Path("/etc/crowdsign/crowdsign.toml")


class ConfigError(Exception):
    """One or more problems in a config, each a line naming file and key."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from.

    uri:            `replay:PATH` (video file or image folder), `v4l2:/dev/videoN`
                    or `v4l2:N`, `gst:PIPELINE` (a GStreamer pipeline ending in
                    appsink), `picamera2` or `picamera2:N` (camera number).
    pace:           replay only: `realtime` (the file's own frame rate) or `fast`.
    at_end:         replay only, at the end of the recording: `loop`, `exit`
                    (the daemon stops cleanly) or `stall` (deliver nothing more,
                    as a camera that went silent would).
    fps:            replay of an image folder, or to override a video's own rate
                    (frames per second); 0 means the file's own rate (10 for folders).
    width, height:  picamera2 lores size and v4l2 requested size in pixels;
                    0 means the model's input size.
    format:         picamera2 lores format: `yuv420` (luma plane is free) or
                    `rgb888` (only where the board's ISP can output it for lores).
    buffer_count:   picamera2 buffers; more absorbs jitter, fewer saves memory.
    scaler_crop:    picamera2 ScalerCrop [x, y, width, height] in sensor pixels,
                    to count only part of the field of view.
    stall_timeout_s: no frame for this long and the source is reopened.
    backoff_initial_s, backoff_max_s: reopen delays, doubling from the first
                    to the second after each failed attempt.
    """

    uri: str = "picamera2"
    pace: str = "realtime"
    at_end: str = "loop"
    fps: float = 0.0
    width: int = 0
    height: int = 0
    format: str = "yuv420"
    buffer_count: int = 4
    scaler_crop: Optional[tuple[int, ...]] = None
    stall_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    @property
    def kind(self) -> str:
        return self.uri.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.uri.split(":", 1)[1] if ":" in self.uri else ""


@dataclass(frozen=True)
class ModelConfig:
    """The counting model.

    path:         a model card (`.toml`, naming its `.tflite`) or a `.tflite`
                  with its card beside it (same name, `.toml`).
    threshold:    detector score threshold, 0..1; default from the model card.
    classes:      detector class names counted; default from the card (person).
    num_threads:  TFLite CPU threads.
    tiles:        detectors only: [rows, cols] tiles over the frame, each run
                  through the model; [1, 1] is one pass.
    tile_overlap: fraction of a tile shared with its neighbour.
    nms_iou:      IoU above which two detections are the same person
                  (raw-output detectors, and merging at tile seams).
    mirror:       which views of a frame are counted: `off` (the frame as it
                  is), `alternate` (every other frame mirrored left to right,
                  so the smoothing averages two views of a slowly changing
                  crowd at no extra cost), or `both` (each frame and its
                  mirror, averaged: twice the model time). Unset: what the
                  model card's `mirror` says, the views its metrics were
                  measured with (`off` unless it says `both`).
    """

    path: Path = Path("/usr/share/crowdsign/models/default.toml")
    threshold: Optional[float] = None
    classes: Optional[tuple[str, ...]] = None
    num_threads: int = 2
    tiles: tuple[int, ...] = (1, 1)
    tile_overlap: float = 0.1
    nms_iou: float = 0.5
    mirror: Optional[str] = None


MIRROR_MODES = ("off", "alternate", "both")
# What a folder of still images can be counted with (`crowdsign bench`, the
# training tools): `alternate` needs a sequence of frames of one scene.
STILL_IMAGE_MIRROR_MODES = ("off", "both")


@dataclass(frozen=True)
class ZoneConfig:
    """A named part of the image, e.g. the platform in front of one train car.

    polygon:    corners as [x, y] in normalised image coordinates (0..1, x right,
                y down), at least three.
    thresholds: this zone's level boundaries in people; default [levels].thresholds.
    """

    name: str
    polygon: tuple[tuple[float, ...], ...]
    thresholds: Optional[tuple[float, ...]] = None


@dataclass(frozen=True)
class LevelsConfig:
    """How counts become crowding levels.

    smoothing:   `median` or `ema` over the last `window` counted frames.
    window:      frames in the median, or the EMA span (alpha = 2 / (window + 1)).
    names:       level names, least crowded first; one more than thresholds.
    thresholds:  ascending boundaries in people between consecutive levels.
    hysteresis:  people a smoothed count must pass a boundary by before the
                 level changes, so a sign never flaps around a boundary.
    stale_after_s: seconds without a counted frame before every zone is `unknown`.
    publish_interval_s: while no frame is counted, how often an update (with
                 unknown levels once stale) is still published.
    """

    smoothing: str = "median"
    window: int = 5
    names: tuple[str, ...] = ("low", "medium", "high")
    thresholds: tuple[float, ...] = (10.0, 25.0)
    hysteresis: float = 1.0
    stale_after_s: float = 3.0
    publish_interval_s: float = 1.0


@dataclass(frozen=True)
class SerialOutputConfig:
    """A line-oriented display controller on a serial port.

    port:       a device (`/dev/ttyUSB0`, `/dev/serial0`) or a pyserial URL
                (`loop://`, `socket://host:port`, `spy://...`).
    baudrate, bytesize, parity (N, E, O, M, S), stopbits (1, 1.5, 2): line settings.
    format:     `template` or `json` (one JSON object a line).
    template:   Python format string. Fields: `{total}`, `{zones}` (all zones as
                `name=count` joined by `;`), `{levels}` (`name=level` joined by
                `;`), `{count[NAME]}` and `{level[NAME]}` for one zone. A count
                that is not known (stale data) prints as `--`.
    rate_hz:    most updates written per second.
    backoff_initial_s, backoff_max_s: reopen delays when the port is gone.
    write_timeout_s: a write blocked longer than this counts as a lost port.
    """

    type: str
    port: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    format: str = "template"
    template: str = "{zones}\r\n"
    rate_hz: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    write_timeout_s: float = 1.0


DEFAULT_NOTICE = "Anonymous counting - no images recorded"
"""What display sinks cycle by default: data-protection rules ask for
information on the device itself (see README, "Public notice")."""


@dataclass(frozen=True)
class IbisTelegramConfig:
    """One IBIS telegram sent per update (VDV 300 data records).

    type:     `DS003a` (`zA` + blocks + text: destination text of a front
              display), `DS021` (`aA` + address + blocks + text: text for the
              display at `address`), or `DS001` (`l` + three digits: a number,
              e.g. level codes, for a line-number field).
    address:  DS021 only: the display's address, 0..15.
    blocks:   DS003a / DS021: text length in blocks of 16 characters, 1..15;
              the text is padded with spaces or cut to blocks * 16.
    template: what to send, with the serial template's fields (`{levels}`,
              `{count[NAME]}`, `{code[NAME]}`, `{best}`, ...). DS001 takes
              one to three digits, e.g. `{code[car1]}{code[car2]}`.
    no_data:  text sent instead while there is no data (stale counts, camera
              lost, daemon stopping); empty: the template itself, whose counts
              then read `--`, codes 0 and `{best}` `--`.
    """

    type: str = "DS003a"
    address: int = 0
    blocks: int = 3
    template: str = "{levels}"
    no_data: str = ""


@dataclass(frozen=True)
class IbisOutputConfig:
    """A platform display on an IBIS bus (VDV 300): ASCII telegrams, CR, checksum.

    port:     a serial device (an RS-485 / IBIS interface: `/dev/ttyUSB0`,
              `/dev/serial0`) or a pyserial URL.
    baudrate, bytesize, parity, stopbits: 1200 baud 7E2 is the IBIS standard.
    telegrams: the telegrams sent for each update, in order ([[outputs.telegrams]]
              tables); one DS003a with `{levels}` by default.
    notice:   the public notice text telegrams show instead of the counts for
              `notice_for_s` seconds every `notice_every_s` seconds (0: never).
    rate_hz:  most updates sent per second (at 1200 baud a 50-character
              telegram takes about 0.5 s).
    backoff_initial_s, backoff_max_s, write_timeout_s: as for `serial`.
    """

    type: str
    port: str
    baudrate: int = 1200
    bytesize: int = 7
    parity: str = "E"
    stopbits: float = 2
    telegrams: tuple[IbisTelegramConfig, ...] = (IbisTelegramConfig(),)
    notice: str = DEFAULT_NOTICE
    notice_every_s: float = 60.0
    notice_for_s: float = 5.0
    rate_hz: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    write_timeout_s: float = 2.0


@dataclass(frozen=True)
class ModbusOutputConfig:
    """A Modbus RTU server (slave) on a serial line that a PLC or
    passenger-information controller polls; register map in the README.

    port:     the RS-485 serial device (`/dev/ttyUSB0`, `/dev/serial0`).
    baudrate, bytesize, parity, stopbits: 19200 8E1 is the Modbus default.
    unit_id:  this server's Modbus address on the bus, 1..247.
    backoff_initial_s, backoff_max_s: reopen delays when the port is gone.
    """

    type: str
    port: str
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "E"
    stopbits: float = 1
    unit_id: int = 1
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 5.0


@dataclass(frozen=True)
class LedMatrixOutputConfig:
    """An LED matrix of MAX7219 modules (8x8 each, cascaded) on SPI, via luma.led_matrix.

    device:   `max7219` (the real chain on /dev/spidev<spi_port>.<spi_device>)
              or `dummy` (luma's in-memory device, for bench rigs and tests;
              nothing is driven).
    spi_port, spi_device: the SPI bus and chip select (Pi: 0, 0 = CE0).
    cascaded: modules in the chain; width 0 means 8 * cascaded pixels.
    width, height: the matrix in pixels (height 8 for one row of modules).
    block_orientation: luma's per-module rotation, 0, 90, -90 or 180 (the
              common 4-in-1 boards need -90).
    rotate:   whole-display rotation, 0..3 (quarter turns).
    contrast: LED brightness, 0..255.
    layout:   `bars` (each car a bar, one step per level) or `numbers`
              (people per car); cars are the [[cars]], or the zones.
    arrow:    draw an arrow above the recommended (least crowded) car.
    no_data_text: shown, centred, while there is no data; "" blanks the matrix.
    notice, notice_every_s, notice_for_s: the public notice, scrolled across
              every notice_every_s seconds (0: never) for at most notice_for_s.
    scroll_px_s: scrolling speed of the notice, pixels per second.
    capture_png: `dummy` only: write each frame shown to this PNG file, so a
              bench or test can look at the display.
    rate_hz, backoff_initial_s, backoff_max_s: as for `serial`.
    """

    type: str
    device: str = "max7219"
    spi_port: int = 0
    spi_device: int = 0
    cascaded: int = 4
    width: int = 0
    height: int = 8
    block_orientation: int = 0
    rotate: int = 0
    contrast: int = 64
    layout: str = "bars"
    arrow: bool = True
    no_data_text: str = "--"
    notice: str = DEFAULT_NOTICE
    notice_every_s: float = 60.0
    notice_for_s: float = 15.0
    scroll_px_s: float = 24.0
    capture_png: str = ""
    rate_hz: float = 4.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0

    @property
    def port(self) -> str:
        """The device for `crowdsign check` and logs: `spi0.0` or `dummy`."""
        return "dummy" if self.device == "dummy" else f"spi{self.spi_port}.{self.spi_device}"

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) of the matrix in pixels."""
        return (self.width or 8 * self.cascaded, self.height)


OutputConfig = Union[SerialOutputConfig, IbisOutputConfig, ModbusOutputConfig,
                     LedMatrixOutputConfig]
OUTPUT_TYPES: dict[str, type] = {
    "serial": SerialOutputConfig,
    "ibis": IbisOutputConfig,
    "modbus": ModbusOutputConfig,
    "led_matrix": LedMatrixOutputConfig,
}


@dataclass(frozen=True)
class CarConfig:
    """One car of the train that stops at the platform, in train order.

    name:  what signs call it (`1`, `A`, `front`).
    zones: the zones in front of this car; their counts are added up.
    """

    name: str
    zones: tuple[str, ...]


@dataclass(frozen=True)
class RecommendConfig:
    """The least-crowded-car recommendation (see crowdsign.recommend).

    margin:  people a car must have fewer than the most crowded car to be
             recommended at all, and fewer than the recommended car to take
             its place.
    dwell_s: seconds a recommendation holds at least, so the arrow does not
             hop between cars.
    """

    margin: float = 3.0
    dwell_s: float = 20.0


@dataclass(frozen=True)
class LoggingConfig:
    """What goes to the journal.

    level:              `debug`, `info`, `warning` or `error`.
    summary_interval_s: seconds between summary lines (counts, fps, timings).
    """

    level: str = "info"
    summary_interval_s: float = 30.0


@dataclass(frozen=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    zones: tuple[ZoneConfig, ...] = ()
    levels: LevelsConfig = field(default_factory=LevelsConfig)
    outputs: tuple[OutputConfig, ...] = ()
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    cars: tuple[CarConfig, ...] = ()
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    path: Optional[Path] = None

    def zone_list(self) -> tuple[ZoneConfig, ...]:
        """The configured zones, or one zone `all` covering the frame."""
        if self.zones:
            return self.zones
        return (ZoneConfig("all", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))),)

    def car_list(self) -> tuple[CarConfig, ...]:
        """The configured cars in train order, or each zone a car of its own."""
        if self.cars:
            return self.cars
        return tuple(CarConfig(z.name, (z.name,)) for z in self.zone_list())


# --- loading -----------------------------------------------------------------

_SECTIONS = {
    "source": SourceConfig,
    "model": ModelConfig,
    "levels": LevelsConfig,
    "logging": LoggingConfig,
    "recommend": RecommendConfig,
}


def load_config(path: Union[str, Path]) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path).absolute()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read config file: {e.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: config file is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Optional[Path] = None) -> Config:
    """Validate an already-parsed TOML table; `path` names it in errors."""
    where = str(path) if path else "<config>"
    base_dir = path.parent if path else Path.cwd()
    problems: list[str] = []
    built: dict[str, Any] = {}

    for key in raw:
        if key not in _SECTIONS and key not in ("zones", "outputs", "cars"):
            problems.append(f"{where}: [{_name(key)}]: unknown section")

    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            problems.append(f"{where}: [{name}]: must be a table")
            continue
        obj = _build(cls, table, f"[{name}]", where, problems)
        if obj is not None:
            built[name] = obj

    built["zones"] = tuple(
        z for z in (_build(ZoneConfig, t, f"[[zones]] #{i + 1}", where, problems)
                    for i, t in enumerate(_array_of_tables(raw, "zones", where, problems)))
        if z is not None)
    built["cars"] = tuple(
        c for c in (_build(CarConfig, t, f"[[cars]] #{i + 1}", where, problems)
                    for i, t in enumerate(_array_of_tables(raw, "cars", where, problems)))
        if c is not None)
    outputs = []
    for i, table in enumerate(_array_of_tables(raw, "outputs", where, problems)):
        label = f"[[outputs]] #{i + 1}"
        kind = table.get("type")
        if not isinstance(kind, str) or kind not in OUTPUT_TYPES:
            problems.append(f"{where}: {label}.type: must be one of "
                            f"{', '.join(OUTPUT_TYPES)}, got {kind!r}")
            continue
        out = _build(OUTPUT_TYPES[kind], table, label, where, problems)
        if out is not None:
            outputs.append(out)
    built["outputs"] = tuple(outputs)

    if not problems:
        built["source"] = _resolve_source_path(built["source"], base_dir)
        built["model"] = dataclasses.replace(
            built["model"], path=_resolve(built["model"].path, base_dir))
        built["outputs"] = tuple(
            dataclasses.replace(o, capture_png=str(_resolve(Path(o.capture_png), base_dir)))
            if isinstance(o, LedMatrixOutputConfig) and o.capture_png else o
            for o in built["outputs"])
        config = Config(path=path, **built)
        problems.extend(validate(config, where))
    if problems:
        raise ConfigError(problems)
    return config


def _resolve(p: Path, base_dir: Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else Path(os.path.normpath(base_dir / p))


def _resolve_source_path(source: SourceConfig, base_dir: Path) -> SourceConfig:
    if source.kind == "replay" and source.target:
        return dataclasses.replace(
            source, uri=f"replay:{_resolve(Path(source.target), base_dir)}")
    return source


def _array_of_tables(raw, key, where, problems) -> list[dict]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        problems.append(f"{where}: {key}: must be written as [[{key}]] tables")
        return []
    return value


def _build(cls, table: dict, label: str, where: str, problems: list[str]):
    """Make a `cls` from a TOML table, checking keys and types against its fields."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for key, value in table.items():
        if key not in fields:
            problems.append(f"{where}: {label}.{_name(key)}: unknown key "
                            f"(known: {', '.join(fields)})")
            continue
        inner = _table_type(hints[key])
        if inner is not None:       # a list of sub-tables, e.g. [[outputs.telegrams]]
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                problems.append(f"{where}: {label}.{key}: must be written as "
                                f"[[...{key}]] tables")
                continue
            items = [_build(inner, t, f"{label}.{key} #{i + 1}", where, problems)
                     for i, t in enumerate(value)]
            kwargs[key] = tuple(items)
            continue
        ok, converted, expected = _convert(value, hints[key])
        if not ok:
            problems.append(f"{where}: {label}.{key}: expected {expected}, got {_show(value)}")
            continue
        kwargs[key] = converted
    for name, f in fields.items():
        if (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                and name not in kwargs and name not in table):
            problems.append(f"{where}: {label}.{name}: required key missing")
    if len(problems) > before:
        return None
    return cls(**kwargs)


def _table_type(hint: Any) -> Optional[type]:
    """X when `hint` is tuple[X, ...] with X a config dataclass, else None."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if args and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def _name(key: str) -> str:
    """A key or name for a problem line: as written if printable, else quoted,
    so a line break in a quoted TOML key never splits the problem in two."""
    return key if key.isprintable() and key.strip() == key and key else repr(key)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _convert(value: Any, hint: Any) -> tuple[bool, Any, str]:
    """Check `value` against a type hint; return (ok, converted value, expected)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union:
        inner = [a for a in args if a is not type(None)][0]
        return _convert(value, inner)
    if hint is bool:
        return isinstance(value, bool), value, "true or false"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value, "an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value, "a number"
    if hint is str:
        return isinstance(value, str), value, "a string"
    if hint is Path:
        return isinstance(value, str), Path(value) if isinstance(value, str) else value, "a path string"
    if origin is tuple:
        inner = args[0]
        if not isinstance(value, list):
            _, _, what = _convert(None, inner)
            return False, value, f"a list of {what}"
        items = []
        for item in value:
            ok, conv, what = _convert(item, inner)
            if not ok:
                return False, value, f"a list of {what}"
            items.append(conv)
        return True, tuple(items), "a list"
    raise TypeError(f"unsupported config type {hint!r}")  # a programming error


# --- semantic checks -----------------------------------------------------------

SOURCE_KINDS = ("replay", "v4l2", "gst", "picamera2")


def validate(config: Config, where: str) -> list[str]:
    """Problems that types alone cannot catch, one line each."""
    p: list[str] = []
    s, m, lv, lg = config.source, config.model, config.levels, config.logging

    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            p.append(f"{where}: {key}: {msg}")

    need(s.kind in SOURCE_KINDS, "[source].uri",
         f"must start with one of {', '.join(k + ':' for k in SOURCE_KINDS)}, got {s.uri!r}")
    need(s.kind not in ("replay", "v4l2", "gst") or bool(s.target), "[source].uri",
         f"{s.kind}: needs a target after the colon, got {s.uri!r}")
    need(s.kind != "picamera2" or s.target == "" or s.target.isdigit(), "[source].uri",
         f"picamera2 takes a camera number (picamera2:0), got {s.uri!r}")
    need(s.pace in ("realtime", "fast"), "[source].pace", f"must be realtime or fast, got {s.pace!r}")
    need(s.at_end in ("loop", "exit", "stall"), "[source].at_end",
         f"must be loop, exit or stall, got {s.at_end!r}")
    need(s.fps >= 0, "[source].fps", f"must be >= 0, got {s.fps}")
    need(s.width >= 0 and s.height >= 0, "[source].width/height", "must be >= 0")
    need(s.format in ("yuv420", "rgb888"), "[source].format",
         f"must be yuv420 or rgb888, got {s.format!r}")
    need(1 <= s.buffer_count <= 16, "[source].buffer_count", f"must be 1..16, got {s.buffer_count}")
    need(s.scaler_crop is None or (len(s.scaler_crop) == 4 and min(s.scaler_crop[2:]) > 0
                                   and min(s.scaler_crop[:2]) >= 0),
         "[source].scaler_crop", "must be [x, y, width, height] with width, height > 0")
    need(s.stall_timeout_s > 0, "[source].stall_timeout_s", "must be > 0")
    need(0 < s.backoff_initial_s <= s.backoff_max_s, "[source].backoff_initial_s",
         "must be > 0 and <= backoff_max_s")

    need(m.threshold is None or 0.0 < m.threshold < 1.0, "[model].threshold",
         f"must be between 0 and 1, got {m.threshold}")
    need(1 <= m.num_threads <= 64, "[model].num_threads", f"must be 1..64, got {m.num_threads}")
    need(len(m.tiles) == 2 and all(1 <= t <= 8 for t in m.tiles), "[model].tiles",
         f"must be [rows, cols], each 1..8, got {list(m.tiles)}")
    need(0.0 <= m.tile_overlap < 0.5, "[model].tile_overlap", "must be in [0, 0.5)")
    need(0.0 < m.nms_iou < 1.0, "[model].nms_iou", "must be between 0 and 1")
    need(m.classes is None or len(m.classes) > 0, "[model].classes", "must not be empty")
    need(m.mirror is None or m.mirror in MIRROR_MODES, "[model].mirror",
         f"must be {', '.join(MIRROR_MODES[:-1])} or {MIRROR_MODES[-1]}, got {m.mirror!r}")

    need(lv.smoothing in ("median", "ema"), "[levels].smoothing",
         f"must be median or ema, got {lv.smoothing!r}")
    need(1 <= lv.window <= 1000, "[levels].window", f"must be 1..1000, got {lv.window}")
    p.extend(_check_thresholds(lv.thresholds, lv.names, "[levels].thresholds", where))
    need(len(set(lv.names)) == len(lv.names) and "unknown" not in lv.names, "[levels].names",
         "must be distinct and must not include 'unknown' (used for stale data)")
    need(lv.hysteresis >= 0, "[levels].hysteresis", "must be >= 0")
    need(lv.stale_after_s > 0, "[levels].stale_after_s", "must be > 0")
    need(lv.publish_interval_s > 0, "[levels].publish_interval_s", "must be > 0")

    seen: set[str] = set()
    for i, z in enumerate(config.zones):
        key = f"[[zones]] #{i + 1} ({_name(z.name)})"
        need(bool(z.name) and z.name.replace("_", "").replace("-", "").isalnum(), f"{key}.name",
             "must be non-empty letters, digits, - or _")
        need(z.name not in seen, f"{key}.name", "duplicate zone name")
        seen.add(z.name)
        need(len(z.polygon) >= 3 and all(len(pt) == 2 for pt in z.polygon), f"{key}.polygon",
             "must be at least three [x, y] points")
        need(all(0.0 <= c <= 1.0 for pt in z.polygon for c in pt), f"{key}.polygon",
             "points must lie in normalised image coordinates 0..1")
        if z.thresholds is not None:
            p.extend(_check_thresholds(z.thresholds, lv.names, f"{key}.thresholds", where))

    zone_names = [z.name for z in config.zone_list()]
    in_a_car: set[str] = set()
    car_names: set[str] = set()
    for i, c in enumerate(config.cars):
        key = f"[[cars]] #{i + 1} ({_name(c.name)})"
        need(bool(c.name) and c.name.isprintable() and c.name.isascii(), f"{key}.name",
             "must be non-empty printable ASCII")
        need(c.name not in car_names, f"{key}.name", "duplicate car name")
        car_names.add(c.name)
        need(len(c.zones) > 0, f"{key}.zones", "must name at least one zone")
        for z in c.zones:
            need(z in zone_names, f"{key}.zones",
                 f"unknown zone {z!r} (zones: {', '.join(zone_names)})")
            need(z not in in_a_car, f"{key}.zones", f"zone {z!r} is already in another car")
            in_a_car.add(z)
    need(config.recommend.margin >= 0, "[recommend].margin", "must be >= 0 people")
    need(config.recommend.dwell_s >= 0, "[recommend].dwell_s", "must be >= 0 seconds")

    for i, o in enumerate(config.outputs):
        key = f"[[outputs]] #{i + 1}"
        checks = _OUTPUT_CHECKS[o.type]
        p.extend(f"{where}: {k}: {msg}"
                 for k, msg in checks(o, key, zone_names, [c.name for c in config.car_list()]))

    need(lg.level in ("debug", "info", "warning", "error"), "[logging].level",
         f"must be debug, info, warning or error, got {lg.level!r}")
    need(lg.summary_interval_s > 0, "[logging].summary_interval_s", "must be > 0")
    return p


def _check_thresholds(thresholds, names, key, where) -> list[str]:
    if len(thresholds) != len(names) - 1:
        return [f"{where}: {key}: needs {len(names) - 1} values, one between each pair "
                f"of [levels].names, got {len(thresholds)}"]
    if any(b <= a for a, b in zip(thresholds, thresholds[1:])) or any(t < 0 for t in thresholds):
        return [f"{where}: {key}: must be non-negative and strictly ascending, got {list(thresholds)}"]
    return []


# --- per output type: (key, problem) pairs --------------------------------------

def _check_line(o, key: str) -> list[tuple[str, str]]:
    """Serial line settings shared by serial, IBIS and Modbus outputs."""
    p: list[tuple[str, str]] = []
    if not o.port:
        p.append((f"{key}.port", "must name a device or pyserial URL"))
    if o.baudrate <= 0:
        p.append((f"{key}.baudrate", "must be > 0"))
    if o.bytesize not in (5, 6, 7, 8):
        p.append((f"{key}.bytesize", "must be 5, 6, 7 or 8"))
    if o.parity not in ("N", "E", "O", "M", "S"):
        p.append((f"{key}.parity", "must be N, E, O, M or S"))
    if o.stopbits not in (1, 1.5, 2):
        p.append((f"{key}.stopbits", "must be 1, 1.5 or 2"))
    if not 0 < o.backoff_initial_s <= o.backoff_max_s:
        p.append((f"{key}.backoff_initial_s", "must be > 0 and <= backoff_max_s"))
    return p


def _check_rate_and_notice(o, key: str, with_notice: bool = True) -> list[tuple[str, str]]:
    p: list[tuple[str, str]] = []
    if not 0 < o.rate_hz <= 100:
        p.append((f"{key}.rate_hz", "must be in (0, 100]"))
    if with_notice:
        if o.notice_every_s < 0:
            p.append((f"{key}.notice_every_s", "must be >= 0 (0: never)"))
        if o.notice_every_s > 0 and not 0 < o.notice_for_s < o.notice_every_s:
            p.append((f"{key}.notice_for_s", "must be > 0 and < notice_every_s"))
        if o.notice_every_s > 0 and not o.notice.strip():
            p.append((f"{key}.notice", "must not be empty while notice_every_s > 0"))
    return p


def _check_serial_output(o: SerialOutputConfig, key: str, zones: list[str], cars: list[str]):
    p = _check_line(o, key)
    if o.format not in ("template", "json"):
        p.append((f"{key}.format", "must be template or json"))
    p.extend(_check_rate_and_notice(o, key, with_notice=False))
    if o.write_timeout_s <= 0:
        p.append((f"{key}.write_timeout_s", "must be > 0"))
    if o.format == "template":
        from crowdsign.sinks.template import check_template  # local: sinks import config
        err = check_template(o.template, zones, cars)
        if err is not None:
            p.append((f"{key}.template", err))
    return p


def _check_ibis_output(o: IbisOutputConfig, key: str, zones: list[str], cars: list[str]):
    from crowdsign.sinks.ibis import check_telegram  # local: sinks import config
    p = _check_line(o, key)
    p.extend(_check_rate_and_notice(o, key))
    if o.write_timeout_s <= 0:
        p.append((f"{key}.write_timeout_s", "must be > 0"))
    if not o.telegrams:
        p.append((f"{key}.telegrams", "needs at least one [[outputs.telegrams]] table"))
    for i, t in enumerate(o.telegrams):
        for field_name, msg in check_telegram(t, zones, cars,
                                              o.notice if o.notice_every_s else ""):
            p.append((f"{key}.telegrams #{i + 1}.{field_name}", msg))
    return p


def _check_modbus_output(o: ModbusOutputConfig, key: str, zones: list[str], cars: list[str]):
    p = _check_line(o, key)
    if not 1 <= o.unit_id <= 247:
        p.append((f"{key}.unit_id", f"must be 1..247, got {o.unit_id}"))
    if len(zones) > 64:
        p.append((f"{key}", "the register map has room for 64 zones"))
    return p


def _check_led_output(o: LedMatrixOutputConfig, key: str, zones: list[str], cars: list[str]):
    p = _check_rate_and_notice(o, key)
    if o.device not in ("max7219", "dummy"):
        p.append((f"{key}.device", f"must be max7219 or dummy, got {o.device!r}"))
    if o.spi_port < 0 or o.spi_device < 0:
        p.append((f"{key}.spi_port/spi_device", "must be >= 0"))
    if not 1 <= o.cascaded <= 64:
        p.append((f"{key}.cascaded", f"must be 1..64, got {o.cascaded}"))
    width, height = o.pixels
    if width % 8 or height % 8 or width <= 0 or height <= 0:
        p.append((f"{key}.width/height", f"must be multiples of 8 (8x8 modules), got "
                                         f"{width}x{height}"))
    elif width * height != 64 * o.cascaded:
        p.append((f"{key}.width/height", f"{width}x{height} needs {width * height // 64} "
                                         f"modules, cascaded is {o.cascaded}"))
    if o.block_orientation not in (0, 90, -90, 180):
        p.append((f"{key}.block_orientation", "must be 0, 90, -90 or 180"))
    if o.rotate not in (0, 1, 2, 3):
        p.append((f"{key}.rotate", "must be 0, 1, 2 or 3"))
    if not 0 <= o.contrast <= 255:
        p.append((f"{key}.contrast", "must be 0..255"))
    if o.layout not in ("bars", "numbers"):
        p.append((f"{key}.layout", f"must be bars or numbers, got {o.layout!r}"))
    if o.scroll_px_s <= 0:
        p.append((f"{key}.scroll_px_s", "must be > 0"))
    if o.capture_png and o.device != "dummy":
        p.append((f"{key}.capture_png", "only for device = \"dummy\" (bench and tests)"))
    if not 0 < o.backoff_initial_s <= o.backoff_max_s:
        p.append((f"{key}.backoff_initial_s", "must be > 0 and <= backoff_max_s"))
    if not o.no_data_text.isascii() or not o.notice.isascii():
        p.append((f"{key}.no_data_text/notice", "the matrix font is ASCII only"))
    return p


_OUTPUT_CHECKS = {
    "serial": _check_serial_output,
    "ibis": _check_ibis_output,
    "modbus": _check_modbus_output,
    "led_matrix": _check_led_output,
}
