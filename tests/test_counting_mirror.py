"""`[model] mirror`: counting a frame's mirror image too, and putting its counts back in place.

The shipped density model and the COCO SSD count a scene and its mirror image
differently; each test checks what the counter reports against two plain
counters, one fed the frame and one fed the frame mirrored by hand. Frames
come at the model's input size, so no resize sits between the two routes and
the counts agree to float precision.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from crowdsign.config import ModelConfig, ZoneConfig
from crowdsign.counting.counter import MirrorSchedule, load_counter
from crowdsign.counting.detections import Detections, mirrored_back
from crowdsign.frames import Frame, PixelFormat
from crowdsign.zones import ZoneGeometry
from shared_data import REPO, shared_path

DENSITY_CARD = REPO / "models/crowdsign_density_gray/crowdsign_density_gray.toml"
SSD_CARD = REPO / "models/cards/ssd_mobilenet_v1_coco_quant.toml"
# Left and right thirds and the middle: mirroring swaps the outer two.
ZONES = ZoneGeometry([ZoneConfig("left", ((0, 0), (1 / 3, 0), (1 / 3, 1), (0, 1))),
                      ZoneConfig("middle", ((1 / 3, 0), (2 / 3, 0), (2 / 3, 1), (1 / 3, 1))),
                      ZoneConfig("right", ((2 / 3, 0), (1, 0), (1, 1), (2 / 3, 1)))])
SWAPPED = {"left": "right", "middle": "middle", "right": "left"}


def mall_frame(size: tuple[int, int]) -> np.ndarray:
    """A Mall validation frame (a few dozen people, more on one side), BGR at `size`."""
    path = shared_path("data", "mall", "train", "images", "seq_000700.jpg")
    return cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), size, interpolation=cv2.INTER_AREA)


def frame(pixels: np.ndarray, index: int = 0) -> Frame:
    return Frame(np.ascontiguousarray(pixels), PixelFormat.BGR, float(index), index)


def counter(card, mirror: str):
    return load_counter(ModelConfig(path=card, num_threads=2, mirror=mirror), ZONES)


def as_seen_in_mirror(counts) -> dict[str, float]:
    """Zone counts of a mirrored frame, under the zone each one is on in the frame itself."""
    return {SWAPPED[name]: n for name, n in counts.zones.items()}


def plain_views(card, image: np.ndarray):
    """A plain counter's counts of `image` and of its mirror image (zones as in that image)."""
    plain = counter(card, "off")
    return plain.count(frame(image)), plain.count(frame(image[:, ::-1]))


@pytest.mark.parametrize("card,size", [(DENSITY_CARD, (512, 384)), (SSD_CARD, (300, 300))],
                         ids=["density", "ssd"])
def test_alternate_counts_every_other_frame_mirrored_with_zones_kept_in_place(card, size):
    image = mall_frame(size)
    as_is, mirrored = plain_views(card, image)
    assert sum(abs(as_is.zones[z] - as_seen_in_mirror(mirrored)[z]) for z in SWAPPED) > 0.05, \
        "the model counts this frame and its mirror image alike: the test cannot tell them apart"

    alternating = counter(card, "alternate")
    first, second, third = (alternating.count(frame(image, i)) for i in range(3))
    assert first.total == pytest.approx(as_is.total, abs=1e-4)
    assert dict(first.zones) == pytest.approx(dict(as_is.zones), abs=1e-4)
    assert second.total == pytest.approx(mirrored.total, abs=1e-4)
    assert dict(second.zones) == pytest.approx(as_seen_in_mirror(mirrored), abs=1e-4)
    assert third.total == pytest.approx(as_is.total, abs=1e-4)
    assert second.frame == 1 and alternating.timings.invokes == 1


@pytest.mark.parametrize("card,size", [(DENSITY_CARD, (512, 384)), (SSD_CARD, (300, 300))],
                         ids=["density", "ssd"])
def test_both_averages_each_frame_with_its_mirror_image_in_two_invokes(card, size):
    image = mall_frame(size)
    as_is, mirror_counts = plain_views(card, image)
    mirrored = as_seen_in_mirror(mirror_counts)

    both = counter(card, "both")
    for i in range(2):
        counts = both.count(frame(image, i))
        assert counts.zones["left"] == pytest.approx((as_is.zones["left"] + mirrored["left"]) / 2,
                                                     abs=1e-4)
        assert counts.zones["right"] == pytest.approx(
            (as_is.zones["right"] + mirrored["right"]) / 2, abs=1e-4)
        assert counts.total == pytest.approx((as_is.total + mirror_counts.total) / 2, abs=1e-4)
    assert both.timings.invokes == 2 and both.timings.invoke_ms > 0


def test_off_counts_every_frame_as_it_is():
    image = mall_frame((512, 384))
    plain = counter(DENSITY_CARD, "off")
    totals = [plain.count(frame(image, i)).total for i in range(3)]
    assert totals[0] == totals[1] == totals[2]


def test_the_journal_line_says_how_frames_are_mirrored():
    assert counter(DENSITY_CARD, "off").describe().endswith("2 threads")
    assert counter(DENSITY_CARD, "alternate").describe().endswith(", every other frame mirrored")
    assert counter(DENSITY_CARD, "both").describe().endswith(", each frame also mirrored")


def test_unset_the_counter_counts_the_views_the_card_names():
    assert counter(DENSITY_CARD, None).mirror == "both"  # the shipped card's mirror
    assert counter(SSD_CARD, None).mirror == "off"  # a card that names none
    assert counter(DENSITY_CARD, "alternate").mirror == "alternate"


def test_mirror_schedule_alternates_from_the_frame_as_it_is():
    schedule = MirrorSchedule("alternate")
    assert [schedule.views() for _ in range(4)] == [(False,), (True,), (False,), (True,)]
    assert MirrorSchedule("both").views() == (False, True)
    with pytest.raises(ValueError, match="mirror must be one of off, alternate, both"):
        MirrorSchedule("left")


def test_mirrored_boxes_go_back_to_where_they_are_in_the_frame():
    found = Detections(np.array([[0.1, 0.2, 0.3, 0.6], [0.7, 0.0, 1.0, 0.5]], np.float32),
                       np.array([0.9, 0.8], np.float32), np.array([0, 0]), False)
    back = mirrored_back(found)
    np.testing.assert_allclose(back.boxes, [[0.7, 0.2, 0.9, 0.6], [0.0, 0.0, 0.3, 0.5]], atol=1e-6)
    np.testing.assert_allclose(found.boxes[0], [0.1, 0.2, 0.3, 0.6], atol=1e-6)  # the input is kept
    assert back.scores is found.scores and back.cap_hit is False
