"""Why an image was rejected: EigenCAM heatmaps from the feature maps the model's head reads.

EigenCAM needs no gradients or class targets, so it works on a detector or classifier as it is; it is run on
the PyTorch weights shipped beside the ONNX model, loaded only when someone asks and only after the endpoint
has checked them against the registry (`verify.verify_artefacts`): best.pt is a pickle. A model trained on tiles
is explained tile by tile, as it decides: a 9-px pit on a 1,024-px frame is invisible to a whole-frame map.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from defectops.components.deploy.detector import OnnxDetector
from defectops.offline import configure_ultralytics
from defectops.tiling import needs_tiling, tiling_of, windows


class Explainer:
    def __init__(self, folder: Path):
        import torch
        from pytorch_grad_cam import EigenCAM

        configure_ultralytics()
        from ultralytics import YOLO

        meta = json.loads((Path(folder) / "model.json").read_text())
        weights = Path(folder) / "best.pt"
        self.imgsz = int(meta["imgsz"])
        self.tiles = tiling_of(meta)
        self.model = YOLO(str(weights)).model.float().eval()
        head = self.model.model[-1]
        # The feature maps the head reads: the Detect head's several scales, or a classifier's last block.
        layers = [self.model.model[i] for i in head.f] if isinstance(head.f, list) else [self.model.model[-2]]
        self.cam = EigenCAM(self.model, layers)
        self._torch = torch

    def _cam(self, rgb: np.ndarray) -> np.ndarray:
        """The map for one image the model sees whole, at that image's size."""
        h, w = rgb.shape[:2]
        resized = cv2.resize(rgb, (self.imgsz, self.imgsz))
        tensor = self._torch.from_numpy(resized.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        # Targets are ignored by EigenCAM; passing them skips the classifier-only default.
        return cv2.resize(self.cam(tensor, targets=[lambda output: output])[0], (w, h))

    def _tiled_cam(self, rgb: np.ndarray, tile: int, overlap: float) -> np.ndarray:
        """Each tile's map, scaled by the tile's best defect score (EigenCAM normalises every input to 0-1, so
        an empty tile would glow as bright as the one with the pit); overlaps keep the stronger."""
        h, w = rgb.shape[:2]
        cam = np.zeros((h, w), dtype=np.float32)
        for x1, y1, x2, y2 in windows(h, w, tile, overlap):
            crop = rgb[y1:y2, x1:x2]
            tensor = self._torch.from_numpy(cv2.resize(crop, (self.imgsz, self.imgsz)).transpose(2, 0, 1)[None]
                                            .astype(np.float32) / 255.0)
            with self._torch.no_grad():
                scores = self.model(tensor)[0][0, 4:]  # Detect in eval: (4 box + classes, anchors), sigmoided
            weight = float(scores.max()) if scores.numel() else 0.0
            cam[y1:y2, x1:x2] = np.maximum(cam[y1:y2, x1:x2], weight * self._cam(crop))
        return cam

    def heatmap_png(self, rgb: np.ndarray) -> bytes:
        h, w = rgb.shape[:2]
        tiled = self.tiles and needs_tiling(h, w, self.tiles[0])
        return overlay_png(rgb, self._tiled_cam(rgb, *self.tiles) if tiled else self._cam(rgb))


class AnomalyExplainer:
    """An anomaly model's explanation is its own anomaly map (from the verified ONNX graph): red where a patch
    is farthest from every remembered good patch; a typical good image's worst patch shows half-way up."""

    def __init__(self, folder: Path):
        self.detector = OnnxDetector(Path(folder))

    def heatmap_png(self, rgb: np.ndarray) -> bytes:
        return overlay_png(rgb, self.detector.anomaly_map(rgb) / 2.0)


def explainer_for(folder: Path):
    """The explainer an exported version needs: its anomaly map, or EigenCAM on its YOLO weights."""
    meta = json.loads((Path(folder) / "model.json").read_text())
    return AnomalyExplainer(folder) if meta.get("task") == "anomaly" else Explainer(folder)


def overlay_png(rgb: np.ndarray, cam: np.ndarray) -> bytes:
    heat = cv2.applyColorMap(np.uint8(255 * np.clip(cam, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    overlay = (0.55 * rgb + 0.45 * heat).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(overlay).save(buf, format="PNG")
    return buf.getvalue()
