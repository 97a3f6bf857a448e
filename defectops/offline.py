"""Keep every run air-gapped: no telemetry, no update checks, no run-time downloads.

Factory lines are offline and images are IP, so this is enforced in code at import time of
`defectops`, before MLflow, DVC, Great Expectations or Ultralytics are imported.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from defectops.compute import use_cores

_ENV_DEFAULTS = {
    # MLflow 3 usage telemetry and the generic opt-out honoured by several libraries.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    # DVC analytics and its updater.
    "DVC_NO_ANALYTICS": "1",
    "DVC_NO_UPDATER": "1",
    # Great Expectations usage statistics.
    "GX_ANALYTICS_ENABLED": "false",
    # Ultralytics: no DNS probe for connectivity, no auto pip-install of missing packages.
    "YOLO_OFFLINE": "true",
    "YOLO_AUTOINSTALL": "false",
    "YOLO_VERBOSE": "false",
    # Hugging Face / tokenizers paths some libraries touch lazily.
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


# SageMaker SDK v3 reports usage unless its defaults config opts out (there is no env switch).
SAGEMAKER_DEFAULTS = Path(__file__).parent / "sagemaker_defaults.yaml"


def enforce_offline_env() -> None:
    """Set the opt-out variables unless the user already chose a value."""
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # Our own settings directory, so the Ultralytics settings we pin do not touch a user's
    # global ~/.config/Ultralytics (and vice versa).
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path.home() / ".cache" / "defectops"))
    os.environ.setdefault("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(SAGEMAKER_DEFAULTS))


def configure_ultralytics(threads: int | None = None) -> int:
    """Pin Ultralytics settings that would reach the network, provide its font locally, and let it
    use every core (`threads`: a count instead; see compute.py). Returns the torch thread count.

    Ultralytics downloads Arial.ttf the first time it draws labels; we hand it matplotlib's
    bundled DejaVu Sans under that name so plotting never fetches anything.
    """
    from matplotlib import font_manager
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    wanted = {"sync": False, "hub": False, "mlflow": False, "wandb": False, "tensorboard": False,
              "clearml": False, "comet": False, "dvc": False, "neptune": False, "raytune": False}
    changes = {k: v for k, v in wanted.items() if k in SETTINGS and SETTINGS.get(k) != v}
    if changes:
        SETTINGS.update(changes)
    font = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = Path(USER_CONFIG_DIR) / name
        if not target.exists() and font.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(font, target)
    # Ultralytics' NMS uses torchvision's kernel only when torchvision is already imported, else a
    # Python-loop NMS, 4-46x slower here (bench/nms_path.py; the ratio depends on how the boxes
    # overlap). An early model validated at conf 0.001 has thousands of candidates per image.
    import torchvision  # noqa: F401

    return use_cores(threads)
