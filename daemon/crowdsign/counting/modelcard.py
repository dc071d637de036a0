"""Model cards: the facts about a model file that the file itself does not say.

A .tflite file says its tensor shapes, dtypes and quantization, but not how the
network was trained: which colour order and normalisation it expects, what its
class indices mean, which score threshold is sensible, where it came from and
under what licence. A card, a small TOML file beside the model, says those
things, so the counter never guesses and a technician can read them.

Every problem with a card or its files becomes a `ModelError` whose message is
one line naming the file and what is wrong; the daemon prints it and stops.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Debian bookworm has 3.11
    import tomli as tomllib

from crowdsign.config import STILL_IMAGE_MIRROR_MODES

KINDS = ("ssd", "yolox", "density")
DETECTOR_KINDS = ("ssd", "yolox")
COLOURS = ("rgb", "gray")


class ModelError(Exception):
    """A model, its card or its labels cannot be used. The message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class ModelCard:
    """A validated model card.

    path:              the card file.
    name:              the model's name, for logs.
    kind:              `ssd` (TFLite_Detection_PostProcess outputs), `yolox` (raw
                       [1, N, 5 + classes] output) or `density` ([1, H, W, 1] map).
    file:              the .tflite file, resolved against the card's directory.
    input_colour:      `rgb` or `gray`: what the network was trained on.
    input_mean, input_std: per channel (model channel order), in pixel units
                       0..255: the network sees (pixel - mean) / std, which is
                       then quantized with the input tensor's own parameters.
    labels:            class names by label line (empty for density models).
    label_offset:      model class index i is labels[i + label_offset].
    count_classes:     class names counted by default.
    default_threshold: detector score threshold when the config gives none.
    max_detections:    ssd only, informative: detection slots of the model.
    output_stride:     density only: input pixels per output cell.
    cell_gain:         density only, optional: ((people per cell, gain), ...), knots
                       rising. Each cell is multiplied by the gain interpolated at
                       its value (constant beyond the ends) before any sum. A model
                       trained briefly can squash its densest cells, counting
                       large crowds low by a share that depends on the cell's
                       value, not on the scene; a gain fitted on the training
                       split after training (models/training/cell_gain.py)
                       undoes that without retraining or extra inference time.
    cell_gain_window:  with cell_gain, odd, default 1: the gain is interpolated at
                       the mean of the cell's window x window neighbourhood (edges
                       mirrored) instead of at its own value. A dense crowd is
                       squashed as a whole, and its cells' own values are noisy.
    mirror:            `off` (default) or `both`: the views of each frame the
                       card's metrics were measured with, `both` the frame and
                       its mirror image averaged. The daemon counts these
                       unless its `[model] mirror` says otherwise.
    source, licence, notes: provenance, for people.
    """

    path: Path
    name: str
    kind: str
    file: Path
    input_colour: str
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    labels: tuple[str, ...]
    label_offset: int
    count_classes: tuple[str, ...]
    default_threshold: float
    max_detections: Optional[int]
    output_stride: Optional[int]
    cell_gain: Optional[tuple[tuple[float, float], ...]]
    cell_gain_window: int
    mirror: str
    source: str
    licence: str
    notes: str

    @property
    def channels(self) -> int:
        return 3 if self.input_colour == "rgb" else 1

    def class_index(self, name: str) -> int:
        """The model's class index for a label name; ModelError if there is none."""
        try:
            line = self.labels.index(name)
        except ValueError:
            raise ModelError(
                f"{self.path}: class {name!r} is not among the model's "
                f"{len(self.labels)} labels") from None
        index = line - self.label_offset
        if index < 0:
            raise ModelError(f"{self.path}: class {name!r} is label line {line}, "
                             f"before label_offset {self.label_offset}")
        return index


_KEYS = ("name", "kind", "file", "input_colour", "input_mean", "input_std", "labels",
         "label_offset", "count_classes", "default_threshold", "max_detections",
         "output_stride", "cell_gain", "cell_gain_window", "mirror", "source", "licence",
         "notes")


def card_path_for(model_path: Union[str, Path]) -> Path:
    """The card for a configured model path: the path itself, or the .toml beside a .tflite."""
    path = Path(model_path)
    if path.suffix == ".toml":
        return path
    if path.suffix == ".tflite":
        card = path.with_suffix(".toml")
        if not card.is_file():
            raise ModelError(f"{path}: no model card beside it (expected {card})")
        return card
    raise ModelError(f"{path}: model path must be a card (.toml) or a .tflite file")


def load_model_card(path: Union[str, Path]) -> ModelCard:
    """Read and validate a card; relative paths in it are relative to its directory."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: model card not found") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read model card: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: model card is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"{path}: model card is not valid TOML: {e}") from None
    return _parse(raw, path)


def _parse(raw: dict[str, Any], path: Path) -> ModelCard:
    for key in raw:
        if key not in _KEYS:
            raise ModelError(f"{path}: unknown key {key!r} (known: {', '.join(_KEYS)})")
    get = _Getter(raw, path)
    base = path.parent

    kind = get.choice("kind", KINDS)
    colour = get.choice("input_colour", COLOURS)
    channels = 3 if colour == "rgb" else 1
    mean = get.per_channel("input_mean", channels, 0.0)
    std = get.per_channel("input_std", channels, 1.0)
    if any(s == 0 or not math.isfinite(s) for s in std):
        raise ModelError(f"{path}: input_std: must be finite and non-zero, got {list(std)}")

    labels: tuple[str, ...] = ()
    if "labels" in raw:
        labels = _load_labels(raw["labels"], base, path)
    elif kind in DETECTOR_KINDS:
        raise ModelError(f"{path}: labels: required for a {kind} model")
    label_offset = get.integer("label_offset", 0, minimum=0)
    count_classes = get.strings("count_classes", ("person",))

    threshold = get.number("default_threshold", 0.5)
    if not 0.0 < threshold < 1.0:
        raise ModelError(f"{path}: default_threshold: must be between 0 and 1, got {threshold}")
    max_det = get.integer("max_detections", None, minimum=1)
    stride = get.integer("output_stride", None, minimum=1)
    if max_det is not None and kind != "ssd":
        raise ModelError(f"{path}: max_detections: only for ssd models")
    if stride is not None and kind != "density":
        raise ModelError(f"{path}: output_stride: only for density models")
    gain = get.cell_gain("cell_gain")
    if gain is not None and kind != "density":
        raise ModelError(f"{path}: cell_gain: only for density models")
    window = get.integer("cell_gain_window", 1, minimum=1)
    if window % 2 == 0:
        raise ModelError(f"{path}: cell_gain_window: must be odd, got {window}")
    if window != 1 and gain is None:
        raise ModelError(f"{path}: cell_gain_window: only with a cell_gain")

    card = ModelCard(
        path=path, name=get.string("name"), kind=kind,
        file=base / get.string("file"), input_colour=colour,
        input_mean=mean, input_std=std, labels=labels, label_offset=label_offset,
        count_classes=count_classes, default_threshold=threshold,
        max_detections=max_det, output_stride=stride, cell_gain=gain,
        cell_gain_window=window, mirror=get.choice("mirror", STILL_IMAGE_MIRROR_MODES, "off"),
        source=get.string("source", ""), licence=get.string("licence", ""),
        notes=get.string("notes", ""))
    if kind in DETECTOR_KINDS:
        for name in count_classes:
            card.class_index(name)
    return card


class _Getter:
    """Typed access to a card's keys, each failure a ModelError naming file and key."""

    _REQUIRED = object()

    def __init__(self, raw: dict[str, Any], path: Path):
        self.raw, self.path = raw, path

    def _value(self, key: str, default: Any) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is self._REQUIRED:
            raise ModelError(f"{self.path}: {key}: required key missing")
        return default

    def _bad(self, key: str, expected: str) -> ModelError:
        shown = repr(self.raw[key])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return ModelError(f"{self.path}: {key}: expected {expected}, got {shown}")

    def string(self, key: str, default: Any = _REQUIRED) -> str:
        value = self._value(key, default)
        if not isinstance(value, str) or (default is self._REQUIRED and not value):
            raise self._bad(key, "a non-empty string")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> str:
        value = self._value(key, default)
        if value not in choices:
            raise self._bad(key, " or ".join(choices))
        return value

    def integer(self, key: str, default: Any, minimum: int) -> Any:
        value = self._value(key, default)
        if value is default and key not in self.raw:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self._bad(key, f"an integer >= {minimum}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self._value(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._bad(key, "a number")
        return float(value)

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._value(key, list(default))
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v for v in value)):
            raise self._bad(key, "a non-empty list of names")
        return tuple(value)

    def cell_gain(self, key: str) -> Optional[tuple[tuple[float, float], ...]]:
        if key not in self.raw:
            return None
        value = self.raw[key]
        pairs = value if isinstance(value, list) else []
        ok = len(pairs) >= 2 and all(
            isinstance(p, list) and len(p) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) for v in p) for p in pairs)
        if not ok:
            raise self._bad(key, "a list of at least 2 [people per cell, gain] pairs")
        knots = [float(p[0]) for p in pairs]
        gains = [float(p[1]) for p in pairs]
        if knots[0] < 0 or any(b <= a for a, b in zip(knots, knots[1:])):
            raise ModelError(f"{self.path}: {key}: people per cell must start at >= 0 "
                             f"and rise, got {knots}")
        if any(g <= 0 for g in gains):
            raise ModelError(f"{self.path}: {key}: gains must be positive, got {gains}")
        return tuple(zip(knots, gains))

    def per_channel(self, key: str, channels: int, default: float) -> tuple[float, ...]:
        value = self._value(key, [default] * channels)
        ok = (isinstance(value, list) and len(value) in (1, channels)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        if not ok:
            raise self._bad(key, f"a list of 1 or {channels} numbers")
        values = tuple(float(v) for v in value)
        return values * channels if len(values) == 1 else values


def _load_labels(value: Any, base: Path, card: Path) -> tuple[str, ...]:
    """Labels from an inline list or a file of one name a line (blank lines kept as '')."""
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value) or not value:
            raise ModelError(f"{card}: labels: expected a file name or a list of names")
        return tuple(value)
    if not isinstance(value, str) or not value:
        raise ModelError(f"{card}: labels: expected a file name or a list of names")
    file = base / value
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{file}: labels file not found (named by {card})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{file}: cannot read labels file: {e}") from None
    labels = tuple(line.strip() for line in text.splitlines())
    if not any(labels):
        raise ModelError(f"{file}: labels file is empty")
    return labels
