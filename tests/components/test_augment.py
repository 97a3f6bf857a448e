import shutil

import numpy as np
import pytest
from PIL import Image

from defectops.components.augment.step import AugmentConfig, augment, plan_balancing
from defectops.components.augment.transforms import hflip, jitter_photometric, vflip
from defectops.dataset import Box, label_path, read_labels, read_manifest, read_names


def test_plan_fills_rare_classes_up_to_the_largest():
    plan = plan_balancing({"a": ["x"] * 10, "b": ["y"] * 3, "c": []}, ratio=1.0, cap=100)
    assert plan == {"a": 0, "b": 7}
    assert plan_balancing({"a": ["x"] * 10, "b": ["y"] * 3}, ratio=0.5, cap=1) == {"a": 0, "b": 1}


@pytest.mark.parametrize("flip", [hflip, vflip])
def test_geometric_transforms_move_boxes_with_pixels(flip):
    img = np.zeros((40, 60, 3), np.uint8)
    img[5:15, 10:30] = 255  # a bright defect at x 10..30, y 5..15
    box = Box.from_pixels(0, 10, 5, 30, 15, 60, 40)
    out, (moved,) = flip(img, [box])
    x1, y1, x2, y2 = (int(round(v)) for v in moved.to_pixels(60, 40))
    assert out[y1:y2, x1:x2].mean() == 255
    assert out.sum() == img.sum()


def test_photometric_keeps_shape_and_range():
    img = np.full((16, 16, 3), 128, np.uint8)
    out = jitter_photometric(img, np.random.default_rng(0), 0.3)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)


def test_balances_train_split_and_leaves_eval_splits_untouched(tiny_dataset, tmp_path):
    metrics = augment(AugmentConfig(seed=1), tiny_dataset, tmp_path / "aug")
    before, after = metrics["class_images_before"], metrics["class_images_after"]
    present = [c for c, n in before.items() if n]
    assert min(after[c] for c in present) >= max(before.values())
    generated = sum(metrics["generated_per_class"].values())
    assert metrics["train_images_after"] == metrics["train_images_before"] + generated
    original = {r["path"]: r["sha256"] for r in read_manifest(tiny_dataset) if r["split"] != "train"}
    augmented = {r["path"]: r["sha256"] for r in read_manifest(tmp_path / "aug") if r["split"] != "train"}
    assert original == augmented
    again = augment(AugmentConfig(seed=1), tiny_dataset, tmp_path / "again")
    assert again["generated_per_class"] == metrics["generated_per_class"]
    new_rows = [r for r in read_manifest(tmp_path / "aug") if "aug_" in r["path"]]
    assert new_rows and all(int(r["n_boxes"]) > 0 for r in new_rows)
    with Image.open(tmp_path / "aug" / new_rows[0]["path"]) as im:
        assert im.size == (64, 64)


def test_no_balancing_copies_everything(tiny_dataset, tmp_path):
    metrics = augment(AugmentConfig(balance=False), tiny_dataset, tmp_path / "aug")
    assert metrics["generated_per_class"] == {}
    assert len(read_manifest(tmp_path / "aug")) == len(read_manifest(tiny_dataset))
    shutil.rmtree(tmp_path / "aug")


def test_paste_puts_the_defect_inside_its_new_box_and_blends_the_edge():
    from defectops.components.augment.inject import crops_of, paste

    source = np.full((100, 100, 3), 150, np.uint8)
    source[40:50, 30:60] = 255  # a bright scratch
    (crop,) = crops_of(source, [Box.from_pixels(2, 30, 40, 60, 50, 100, 100)], 2, "src.png")
    background = np.full((200, 200, 3), 90, np.uint8)  # another resolution, darker
    out, (box,), _ = paste(background, crop, 2, np.random.default_rng(0))
    assert box.cls == 2 and 0 <= box.cx - box.w / 2 and box.cx + box.w / 2 <= 1
    assert box.w == pytest.approx(0.3, abs=0.02) and box.h == pytest.approx(0.1, abs=0.02)  # same relative size
    x1, y1, x2, y2 = (int(round(v)) for v in box.to_pixels(200, 200))
    inside = out[y1 + 2:y2 - 2, x1 + 2:x2 - 2].astype(int)
    assert inside.mean() > 150  # the defect stands out from the background...
    changed = np.argwhere(np.abs(out.astype(int) - background).sum(axis=2) > 0)
    mx, my = 0.25 * (x2 - x1) + 6, 0.25 * (y2 - y1) + 6  # the crop's margin, at this scale
    assert y1 - my <= changed[:, 0].min() and changed[:, 0].max() <= y2 + my  # ...nothing beyond the crop changed
    assert x1 - mx <= changed[:, 1].min() and changed[:, 1].max() <= x2 + mx
    assert int(out[changed[0][0], changed[0][1]].mean()) < 150  # edges fade into the background


def test_defects_reaching_into_a_crop_are_pasted_with_their_labels():
    from defectops.components.augment.inject import crops_of, paste

    source = np.full((100, 100, 3), 150, np.uint8)
    patch = Box.from_pixels(3, 40, 40, 60, 60, 100, 100)
    pit = Box.from_pixels(1, 62, 45, 66, 49, 100, 100)  # inside the patch's margin
    scratch = Box.from_pixels(0, 50, 63, 90, 70, 100, 100)  # crosses the crop's lower right corner
    far = Box.from_pixels(0, 5, 5, 15, 15, 100, 100)  # nowhere near
    (crop,) = crops_of(source, [patch, pit, scratch, far], 3, "src.png")
    assert [n[0] for n in crop.neighbours] == [1, 0]
    x1, y1, x2, y2 = crop.neighbours[1][1:]
    assert y2 == crop.pixels.shape[0] and x2 == crop.pixels.shape[1]  # clipped to the crop
    _, boxes, _ = paste(np.full((100, 100, 3), 90, np.uint8), crop, 3, np.random.default_rng(1))
    assert [b.cls for b in boxes] == [3, 1, 0]
    (px1, py1, px2, py2), (qx1, qy1, qx2, qy2) = boxes[0].to_pixels(100, 100), boxes[1].to_pixels(100, 100)
    assert (qx2 - qx1, qy2 - qy1) == (pytest.approx(4, abs=0.5), pytest.approx(4, abs=0.5))
    assert abs(min(abs(qx1 - px2), abs(px1 - qx2)) - 2) < 0.5  # the pit stays 2 px beside the patch...
    assert py1 < qy1 < qy2 < py2  # ...at its height


def test_several_pastes_per_image_never_overlap():
    from defectops.components.augment.inject import crops_of, inject, paste

    source = np.full((100, 100, 3), 150, np.uint8)
    source[45:55, 45:55] = 40
    crops = crops_of(source, [Box.from_pixels(1, 45, 45, 55, 55, 100, 100)], 1, "src.png")
    background = np.full((100, 100, 3), 150, np.uint8)
    counts = []
    for _, image, boxes, sources, _ in inject(["bg.png"], lambda _: background, crops, 1, 20,
                                           np.random.default_rng(0), scale_jitter=0.25, max_per_image=3):
        assert len(boxes) == len(sources) >= 1 and all(b.cls == 1 for b in boxes)
        rects = [b.to_pixels(100, 100) for b in boxes]
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        assert (image < 100).sum() >= 0.5 * 81 * len(boxes)  # every labelled defect is really there
        counts.append(len(boxes))
    assert set(counts) == {1, 2, 3}
    assert paste(background, crops[0], 1, np.random.default_rng(0), avoid=((0, 0, 100, 100),)) is None


def test_image_level_boxes_are_not_crops():
    from defectops.components.augment.inject import crops_of

    assert crops_of(np.zeros((50, 50, 3), np.uint8), [Box(0, 0.5, 0.5, 1.0, 1.0)], 0, "x") == []


def test_injection_is_recorded_and_seeded(tiny_dataset, tmp_path):
    import csv

    from defectops.dataset import label_path, read_labels

    metrics = augment(AugmentConfig(seed=3, inject_share=1.0), tiny_dataset, tmp_path / "a")
    assert sum(metrics["injected_per_class"].values()) == sum(metrics["generated_per_class"].values()) > 0
    with open(tmp_path / "a" / "augment_log.csv") as fh:
        log = list(csv.DictReader(fh))
    assert len(log) == sum(metrics["generated_per_class"].values())
    for row in log:
        assert row["kind"] == "injection" and row["onto"] and row["from"]
        box, *_ = read_labels(label_path(tmp_path / "a", row["image"]))
        assert read_names(tmp_path / "a")[box.cls] == row["class"] and box.w > 0  # the pasted defect comes first
    again = augment(AugmentConfig(seed=3, inject_share=1.0), tiny_dataset, tmp_path / "b")
    assert [r["sha256"] for r in read_manifest(tmp_path / "a")] == [r["sha256"] for r in read_manifest(tmp_path / "b")]
    assert again["injected_per_class"] == metrics["injected_per_class"]


def test_without_defect_free_images_injection_is_skipped_and_said(tiny_dataset, tmp_path, caplog):
    from defectops.dataset import label_path, write_manifest

    data = tmp_path / "all-defective"
    shutil.copytree(tiny_dataset, data)
    for row in read_manifest(data):
        if row["split"] == "train" and int(row["n_boxes"]) == 0:
            (data / row["path"]).unlink()
            label_path(data, row["path"]).unlink(missing_ok=True)
    write_manifest(data)
    with caplog.at_level("WARNING", logger="defectops.augment"):
        metrics = augment(AugmentConfig(inject_share=1.0), data, tmp_path / "aug")
    assert metrics["defect_free_backgrounds"] == 0 and sum(metrics["generated_per_class"].values()) > 0
    assert metrics["injected_per_class"] == {}
    assert "no defect-free training images" in caplog.text


def test_pixel_masks_travel_with_every_generated_image(tmp_path):
    """A segmentation dataset's rare class is rebalanced by flipped copies and pasted crops: each new image's
    mask is moved with it, so its outlines still sit on its boxes (not a rectangle standing in for them)."""
    from defectops.components.evaluate.segmentation import true_regions
    from defectops.components.ingest.step import IngestConfig, ingest
    from defectops.dataset import mask_path

    from ..masked_parts import write_parts

    write_parts(tmp_path / "src", n_per_class=12, n_good=8)
    for path in sorted((tmp_path / "src" / "blister" / "Imgs").iterdir())[8:]:  # 4 blisters vs 12 pits
        path.unlink()
    ingest(IngestConfig(source="folders", path=tmp_path / "src"), tmp_path / "raw")
    metrics = augment(AugmentConfig(seed=3), tmp_path / "raw", tmp_path / "aug")
    assert metrics["injected_per_class"]["blister"] > 0 and metrics["generated_per_class"]["blister"] > \
        metrics["injected_per_class"]["blister"]  # both kinds of new image
    generated = [r["path"] for r in read_manifest(tmp_path / "aug") if "/aug_" in r["path"] or "/inj_" in r["path"]]
    masked = [r["path"] for r in read_manifest(tmp_path / "raw") if mask_path(tmp_path / "raw", r["path"]).exists()]
    assert len(masked) == 16 and all(mask_path(tmp_path / "aug", p).exists() for p in masked)
    for rel in generated:
        mask = np.asarray(Image.open(mask_path(tmp_path / "aug", rel)))
        regions = true_regions(mask)
        boxes = read_labels(label_path(tmp_path / "aug", rel))
        assert len(regions) == len(boxes) >= 1, rel
        h, w = mask.shape
        for box in boxes:  # each box is covered by a region of its class whose extent is the box's
            x1, y1, x2, y2 = box.to_pixels(w, h)
            ious = []
            for cls, region in regions:
                ys, xs = np.nonzero(region)
                rx1, ry1, rx2, ry2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                inter = max(0, min(x2, rx2) - max(x1, rx1)) * max(0, min(y2, ry2) - max(y1, ry1))
                union = (x2 - x1) * (y2 - y1) + (rx2 - rx1) * (ry2 - ry1) - inter
                ious.append(inter / union if cls == box.cls else 0.0)
            assert max(ious) > 0.7, (rel, box, ious)
