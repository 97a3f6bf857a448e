"""Why an image was rejected: EigenCAM heatmaps from the feature maps the model's head reads.

EigenCAM needs no gradients or class targets, so it works on a detector or classifier as it is; it is run on
the PyTorch weights shipped beside the ONNX model, loaded only when someone asks and only after the endpoint
has checked them against the registry (`step.verify_artefacts`): best.pt is a pickle.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


class Explainer:
    def __init__(self, folder: Path):
        import torch
        from pytorch_grad_cam import EigenCAM

        from defectops.offline import configure_ultralytics

        configure_ultralytics()
        from ultralytics import YOLO

        meta = json.loads((Path(folder) / "model.json").read_text())
        weights = Path(folder) / "best.pt"
        self.imgsz = int(meta["imgsz"])
        self.model = YOLO(str(weights)).model.float().eval()
        head = self.model.model[-1]
        # The feature maps the head reads: the Detect head's several scales, or a classifier's last block.
        layers = [self.model.model[i] for i in head.f] if isinstance(head.f, list) else [self.model.model[-2]]
        self.cam = EigenCAM(self.model, layers)
        self._torch = torch

    def heatmap_png(self, rgb: np.ndarray) -> bytes:
        h, w = rgb.shape[:2]
        resized = cv2.resize(rgb, (self.imgsz, self.imgsz))
        tensor = self._torch.from_numpy(resized.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        # Targets are ignored by EigenCAM; passing them skips the classifier-only default.
        cam = self.cam(tensor, targets=[lambda output: output])[0]
        cam = cv2.resize(cam, (w, h))
        heat = cv2.applyColorMap(np.uint8(255 * np.clip(cam, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
        overlay = (0.55 * rgb + 0.45 * heat).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(overlay).save(buf, format="PNG")
        return buf.getvalue()
