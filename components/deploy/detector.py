"""ONNX Runtime inference for exported Ultralytics detectors and classifiers and for anomaly models, with no
torch at serving time."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from defectops.anomaly import ANOMALY, anomaly_input
from defectops.components.deploy.batching import MicroBatcher
from defectops.components.deploy.runtimes import open_runner
from defectops.dataset import GOOD
from defectops.imaging import letterbox
from defectops.tiling import detect_tiled, needs_tiling, tiling_of

SCORE_FLOOR = 0.001
# A segmentation model's outlines are traced for detections from this share of the threshold: every box a
# decision or a person can see (the review band starts at half the threshold by default), not the noise.
OUTLINE_SHARE = 0.25


@dataclass(frozen=True)
class Detection:
    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in original image pixels (classifier: whole image)
    polygon: tuple[tuple[int, int], ...] | None = None  # a segmentation model's outline, original pixels
    area_px: int | None = None  # pixels inside that outline's mask (the box overstates a defect's area)


class OnnxDetector:
    """Loads model.onnx + model.json (written by deploy) and turns images into detections.

    A classifier's call is one whole-image detection: the likeliest defect type, scored
    1 - P(good), so the endpoint's threshold, decision and drift features mean the same for both.
    """

    def __init__(self, model_dir: Path, threads: int | None = None, batching: tuple[int, float] | None = None):
        """`batching` = (max_batch, wait_ms): concurrent callers share model calls (when the file's batch axis
        is dynamic). The runtime (ONNX Runtime or OpenVINO) is the one model.json names."""
        model_dir = Path(model_dir)
        self.meta = json.loads((model_dir / "model.json").read_text())
        self.runner = open_runner(model_dir / "model.onnx", self.meta.get("runtime", "onnxruntime"), threads,
                                  self.meta.get("precision", "fp32"))
        if batching and batching[0] > 1 and self.runner.batched:
            self.runner = MicroBatcher(self.runner, *batching)
        self.imgsz = int(self.meta["imgsz"])
        self.names = list(self.meta["names"])
        self.threshold = float(self.meta["threshold"])
        self.task = self.meta.get("task", "detect")
        self.output_classes = list(self.meta.get("output_classes") or self.names)
        self.tiles = tiling_of(self.meta) if self.task == "detect" else None

    @staticmethod
    def decode(data: bytes) -> np.ndarray:
        """Bytes -> RGB uint8 array; raises ValueError for anything that is not an image."""
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
        return letterbox(rgb, self.imgsz)

    def close(self) -> None:
        """Let a micro-batcher's thread go (after a model swap); calls still in flight finish unbatched."""
        if isinstance(self.runner, MicroBatcher):
            self.runner.close()

    @staticmethod
    def _tensor(canvas: np.ndarray) -> np.ndarray:
        return canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0

    def blob(self, rgb: np.ndarray) -> np.ndarray:
        """The model's input for one whole image, as the endpoint prepares it (INT8 calibration uses it)."""
        if self.task == ANOMALY:
            return anomaly_input(rgb, self.imgsz)[None]
        return self._tensor(self._letterbox(rgb)[0])  # a classifier too: see defectops.imaging

    def predict(self, rgb: np.ndarray, iou: float = 0.6, max_det: int = 100) -> list[Detection]:
        return self.infer(rgb, iou, max_det)[0]

    def infer(self, rgb: np.ndarray, iou: float = 0.6, max_det: int = 100) -> tuple[list[Detection], np.ndarray | None]:
        """Detections, plus the pooled backbone embedding when the export carries it (see deploy)."""
        if self.task == ANOMALY:
            score, amap, embedding = self._anomaly(rgb)
            return self._anomaly_region(score, amap, rgb.shape[:2]), embedding
        if self.task == "classify":
            outputs = self.runner.run(self.blob(rgb))
            embedding = outputs[1][0].mean(axis=(1, 2)) if len(outputs) > 1 else None
            return self._classification(outputs[0][0], rgb.shape[:2]), embedding
        if self.tiles and needs_tiling(*rgb.shape[:2], self.tiles[0]):
            return self._infer_tiled(rgb, iou, max_det)
        return self._infer_whole(rgb, iou, max_det)

    def _infer_tiled(self, rgb: np.ndarray, iou: float, max_det: int) -> tuple[list[Detection], np.ndarray | None]:
        """A model trained on tiles sees tiles: boxes merged across them, the embedding averaged over them."""
        embeddings = []

        def detect(crops: list[np.ndarray]) -> list:
            found = []
            for crop in crops:
                detections, embedding = self._infer_whole(np.ascontiguousarray(crop), iou, max_det)
                if embedding is not None:
                    embeddings.append(embedding)
                found.append([(d.class_id, d.score, d.box) for d in detections])
            return found

        merged = detect_tiled(rgb, self.tiles[0], self.tiles[1], detect)[:max_det]
        return ([Detection(b.class_id, self.names[b.class_id], b.score, b.box) for b in merged],
                np.mean(embeddings, axis=0) if embeddings else None)

    def _infer_whole(self, rgb: np.ndarray, iou: float, max_det: int) -> tuple[list[Detection], np.ndarray | None]:
        canvas, scale, (left, top) = self._letterbox(rgb)
        outputs = self.runner.run(self._tensor(canvas))
        protos = outputs.pop(1)[0] if self.task == "segment" else None  # YOLO-seg: (32, imgsz/4, imgsz/4)
        embedding = outputs[1][0].mean(axis=(1, 2)) if len(outputs) > 1 else None
        return self._detections(outputs[0][0], rgb.shape[:2], scale, left, top, iou, max_det, protos), embedding

    def _anomaly(self, rgb: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        score, amap, embedding = self.runner.run(self.blob(rgb))
        return float(score[0]), amap[0], embedding[0]

    def anomaly_map(self, rgb: np.ndarray) -> np.ndarray:
        """Per-patch anomaly at the image's size, in units of a typical good image's worst patch (1.0)."""
        h, w = rgb.shape[:2]
        return cv2.resize(self._anomaly(rgb)[1], (w, h), interpolation=cv2.INTER_LINEAR)

    @staticmethod
    def _anomaly_region(score: float, amap: np.ndarray, shape: tuple[int, int]) -> list[Detection]:
        """One detection: the calibrated score, boxed around the connected patches at least half as anomalous
        as the worst one and worse than a typical good part's worst (1.0), where an inspector should look."""
        if score < SCORE_FLOOR:
            return []
        peak = np.unravel_index(int(np.argmax(amap)), amap.shape)
        level = min(max(0.5 * amap[peak], 1.0), amap[peak])
        _, components = cv2.connectedComponents((amap >= level).astype(np.uint8))
        ys, xs = np.nonzero(components == components[peak])
        (h, w), (mh, mw) = shape, amap.shape
        box = (float(xs.min() * w / mw), float(ys.min() * h / mh), float((xs.max() + 1) * w / mw),
               float((ys.max() + 1) * h / mh))
        return [Detection(-1, ANOMALY, score, box)]

    def _classification(self, probs: np.ndarray, shape: tuple[int, int]) -> list[Detection]:
        by_name = dict(zip(self.output_classes, probs.tolist()))
        score = 1.0 - by_name.get(GOOD, 0.0)
        defects = [(by_name.get(name, 0.0), i, name) for i, name in enumerate(self.names)]
        if score < SCORE_FLOOR or not defects:
            return []
        _, class_id, name = max(defects)
        h, w = shape
        return [Detection(class_id, name, float(score), (0.0, 0.0, float(w), float(h)))]

    def _detections(self, out: np.ndarray, shape: tuple[int, int], scale: float, left: int, top: int, iou: float,
                    max_det: int, protos: np.ndarray | None = None) -> list[Detection]:
        """Decode (4 + classes [+ mask coefficients], anchors) into boxes in original pixels, with class-aware
        NMS; with `protos` (a segmentation model) each box at or above OUTLINE_SHARE x threshold gets its outline."""
        n_coef = len(protos) if protos is not None else 0
        boxes_xywh, class_scores = out[:4].T, out[4:len(out) - n_coef].T
        coefficients = out[len(out) - n_coef:].T
        class_ids = class_scores.argmax(1)
        scores = class_scores[np.arange(len(class_ids)), class_ids]
        keep = scores >= SCORE_FLOOR
        boxes_xywh, scores, class_ids = boxes_xywh[keep], scores[keep], class_ids[keep]
        coefficients = coefficients[keep]
        if len(scores) == 0:
            return []
        xyxy = np.column_stack([boxes_xywh[:, 0] - boxes_xywh[:, 2] / 2, boxes_xywh[:, 1] - boxes_xywh[:, 3] / 2,
                                boxes_xywh[:, 0] + boxes_xywh[:, 2] / 2, boxes_xywh[:, 1] + boxes_xywh[:, 3] / 2])
        # Class-aware NMS: offset boxes per class so different defect types never suppress each other.
        offset = class_ids[:, None] * (self.imgsz + 1)
        order = cv2.dnn.NMSBoxes((xyxy + offset).tolist(), scores.tolist(), SCORE_FLOOR, iou)
        order = np.array(order).reshape(-1)[:max_det]
        h, w = shape
        detections = []
        for i in order:
            x1, y1, x2, y2 = xyxy[i]
            box = (float(np.clip((x1 - left) / scale, 0, w)), float(np.clip((y1 - top) / scale, 0, h)),
                   float(np.clip((x2 - left) / scale, 0, w)), float(np.clip((y2 - top) / scale, 0, h)))
            outline = {}
            if n_coef and scores[i] >= OUTLINE_SHARE * self.threshold:
                outline = self._outline(coefficients[i], protos, box, scale, left, top)
            detections.append(Detection(int(class_ids[i]), self.names[int(class_ids[i])], float(scores[i]), box,
                                        **outline))
        return sorted(detections, key=lambda d: -d.score)

    def _outline(self, coefficients: np.ndarray, protos: np.ndarray, box: tuple[float, float, float, float],
                 scale: float, left: int, top: int) -> dict:
        """YOLO-seg's mask for one detection, only inside its box: the logits (coefficients x prototypes) sampled
        bilinearly at each original pixel's centre, positive = defect, pixels cut to the box as Ultralytics cuts
        them (so the served area is the one evaluation measured). Returns the outline (largest region, simplified
        to about a pixel) and the mask's area in original pixels."""
        c, mh, mw = protos.shape
        x1, y1, x2, y2 = (int(np.ceil(v)) for v in box)
        if x2 <= x1 or y2 <= y1:
            return {"area_px": 0}
        logits = (coefficients @ protos.reshape(c, -1)).reshape(mh, mw).astype(np.float32)
        per_cell = mw / self.imgsz  # prototype cells per letterboxed input pixel
        xs = ((left + (np.arange(x1, x2) + 0.5) * scale) * per_cell - 0.5).astype(np.float32)
        ys = ((top + (np.arange(y1, y2) + 0.5) * scale) * per_cell - 0.5).astype(np.float32)
        map_x, map_y = np.meshgrid(xs, ys)
        region = (cv2.remap(logits, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) > 0)
        region = region.astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            return {"area_px": 0}
        largest = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 1.0, True).reshape(-1, 2)
        polygon = tuple((int(x + x1), int(y + y1)) for x, y in largest)
        return {"polygon": polygon, "area_px": int(region.sum())}
