"""Images worth keeping (rejects, reviews, a sample of accepts), stored by content: the review queue and
retraining read them from here, the decision record points at them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tif"}


class ImageArchive:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha256: str, image_format: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{EXTENSIONS.get(image_format, 'bin')}"

    def store(self, sha256: str, data: bytes, image_format: str) -> str:
        """Write once (same bytes, same name), atomically: a crash never leaves half an image under its name."""
        path = self.path_for(sha256, image_format)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        return str(path)
