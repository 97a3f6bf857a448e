"""Tiles cover the frame, and a defect cut by tile edges comes back as one box."""

import cv2
import numpy as np
import pytest

from defectops.tiling import TileBox, detect_tiled, merge, windows


def blob_detector(class_id: int = 0):
    """A detector that sees exactly the white pixels of a tile: one box per connected blob."""
    def detect_one(tile: np.ndarray):
        count, _, stats, _ = cv2.connectedComponentsWithStats((tile > 127).astype(np.uint8))
        return [(class_id, 0.9, (float(x), float(y), float(x + w), float(y + h)))
                for x, y, w, h, _ in stats[1:count]]
    return lambda tiles: [detect_one(t) for t in tiles]


def frame_with(*boxes, size=(1000, 1300)):
    image = np.zeros(size, np.uint8)
    for x1, y1, x2, y2 in boxes:
        image[y1:y2, x1:x2] = 255
    return image


@pytest.mark.parametrize("height,width,tile,overlap", [(1000, 1300, 320, 0.2), (320, 320, 320, 0.2),
                                                      (700, 330, 256, 0.5)])
def test_windows_cover_the_frame_with_the_overlap(height, width, tile, overlap):
    covered = np.zeros((height, width), int)
    for x1, y1, x2, y2 in windows(height, width, tile, overlap):
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and x2 - x1 <= tile
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1
    if width > tile:  # neighbours share at least the overlap
        starts = sorted({w[0] for w in windows(height, width, tile, overlap)})
        assert max(b - a for a, b in zip(starts, starts[1:])) <= round(tile * (1 - overlap))


def test_a_defect_cut_by_tile_edges_comes_back_as_one_box():
    crack = (40, 500, 1250, 512)  # a hairline crack across four tiles, thinner than any tile's overlap
    found = detect_tiled(frame_with(crack), 320, 0.2, blob_detector())
    assert [b.box for b in found] == [tuple(map(float, crack))]


def test_a_defect_seen_whole_by_two_tiles_is_one_box_and_separate_defects_stay_apart():
    inside_overlap = (262, 100, 300, 130)  # in the strip both of the first two columns of tiles see
    apart = (900, 800, 920, 815)
    found = detect_tiled(frame_with(inside_overlap, apart), 320, 0.2, blob_detector())
    assert sorted(b.box for b in found) == sorted([tuple(map(float, inside_overlap)), tuple(map(float, apart))])


def test_pieces_of_different_defect_types_are_not_joined():
    left = TileBox(0, 0.8, (100, 10, 320, 20), cut=(False, False, True, False))
    right = TileBox(1, 0.7, (256, 10, 400, 20), cut=(True, False, False, False))
    assert len(merge([left, right])) == 2
    assert [b.box for b in merge([left, TileBox(0, 0.7, right.box, right.cut)])] == [(100, 10, 400, 20)]


def test_tiled_box_matching_pairs_each_label_with_its_own_prediction_whatever_the_counts():
    """Three predictions, two labels (the bench that found it crashed on unequal counts): the best-scoring box on
    each label is a hit at IoU 0.5, the duplicate and the wrong-class box are not, in descending-score order."""
    from ultralytics.models.yolo.detect import DetectionValidator

    from defectops.components.evaluate.tiled import match_image

    truth = [(0, (10.0, 10.0, 30.0, 30.0)), (1, (100.0, 100.0, 120.0, 140.0))]
    preds = [(1, 0.4, (101.0, 100.0, 120.0, 141.0)),   # on the second label, right class
             (0, 0.9, (10.0, 11.0, 30.0, 30.0)),        # on the first label, right class
             (0, 0.6, (100.0, 100.0, 120.0, 140.0))]    # on the second label, wrong class
    tp, scores, classes = match_image(DetectionValidator(), preds, truth)
    assert scores == [0.9, 0.6, 0.4] and classes == [0, 0, 1]
    assert tp.shape == (3, 10)
    assert tp[:, 0].tolist() == [True, False, True]
    assert not tp[1].any()
