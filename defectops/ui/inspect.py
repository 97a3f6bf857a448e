"""The inspection queue in the review app: uncertain (and sampled) parts to a person, their answers stored.

Inspectors see the archived image with the model's boxes on a canvas (static/label.js: move, draw,
delete boxes; `g` good, `d` defect, `s` skip), the EigenCAM heatmap and the score against the
threshold, and answer. Answers go to the decision store (`defectops.feedback.answers`); what may be
answered and by whom is checked in `auth.require_role`, like every other decision on this site.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from defectops.errors import DefectopsError
from defectops.feedback import answers
from defectops.feedback.config import FeedbackConfig
from defectops.ui import auth


@dataclass
class Inspection:
    """What the routes need from the app around them."""

    config: FeedbackConfig
    store: Callable  # () -> DecisionStore | None
    archive_root: Path
    deploy_root: Path
    backend: object  # the Registry (artefact hashes for the heatmap's weights)
    csp: str  # the item page's Content-Security-Policy: the site's, plus its own script
    _explainers: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def image_path(self, item: dict) -> Path:
        """The archived image, only from inside the archive (a record's path is data, not a licence to read)."""
        path = Path(item.get("image_uri") or "").resolve()
        if not item.get("image_uri") or not path.is_relative_to(self.archive_root) or not path.is_file():
            raise HTTPException(404, f"record {item['id']}: its image is not in the archive ({self.archive_root})")
        return path

    def heatmap(self, item: dict) -> bytes:
        from defectops.components.deploy.verify import verify_artefacts, version_dir

        version = str(item["model_version"])
        with self._lock:  # one explainer per version, loaded once its weights hash to what the registry says
            if version not in self._explainers:
                folder = version_dir(self.deploy_root, version)
                if not (folder / "best.pt").is_file():
                    raise HTTPException(404, f"v{version} is not exported under {self.deploy_root}: no heatmap")
                verify_artefacts(folder, self.backend.get(version), ("best.pt", "model.json"))
                from defectops.components.deploy.explain import explainer_for

                self._explainers[version] = explainer_for(folder)
            explainer = self._explainers[version]
        import numpy as np
        from PIL import Image

        with Image.open(self.image_path(item)) as im:
            return explainer.heatmap_png(np.asarray(im.convert("RGB")))


def add_inspection_routes(app: FastAPI, inspection: Inspection, page: Callable, require_user: Callable,
                          roles_of: Callable, check_csrf: Callable) -> None:
    def store_or_404():
        store = inspection.store()
        if store is None:
            raise HTTPException(404, "no decision store yet: the endpoint creates it as it serves")
        return store

    def inspector(request: Request) -> str:
        user = require_user(request)
        try:
            auth.require_role(user, roles_of(request, user), "label")
        except DefectopsError as exc:
            raise HTTPException(403, str(exc)) from None
        return user

    def shift_count(store, user: str) -> int:
        return answers.answered_since(store, user, answers.shift_start(datetime.now().astimezone(),
                                                                       inspection.config.shift_starts))

    @app.get("/inspect")
    def next_item(request: Request):
        user = inspector(request)
        store = store_or_404()
        waiting = answers.queue(store, inspection.config, limit=1, skip=tuple(request.session.get("skipped", [])))
        if waiting:
            return RedirectResponse(f"/inspect/{waiting[0]['id']}", status_code=303)
        return page(request, "inspect.html", item=None, shift=shift_count(store, user))

    @app.get("/inspect/{record_id}")
    def item_page(request: Request, record_id: int, message: str | None = None):
        user = inspector(request)
        store = store_or_404()
        try:
            item = answers.record(store, record_id)
        except answers.FeedbackError as exc:
            raise HTTPException(404, str(exc)) from None
        classes = sorted({b["class_name"] for b in item["boxes"]} | set(_model_classes(inspection, item)))
        return page(request, "inspect.html", item=item, shift=shift_count(store, user), classes=classes,
                    boxes_json=json.dumps(item["boxes"]), message=message,
                    waiting=len(answers.queue(store, inspection.config, limit=100)),
                    headers={"Content-Security-Policy": inspection.csp})

    @app.get("/inspect/{record_id}/image")
    def item_image(request: Request, record_id: int):
        inspector(request)
        return FileResponse(inspection.image_path(answers.record(store_or_404(), record_id)))

    @app.get("/inspect/{record_id}/heatmap.png")
    def item_heatmap(request: Request, record_id: int):
        inspector(request)
        return Response(inspection.heatmap(answers.record(store_or_404(), record_id)), media_type="image/png")

    @app.post("/inspect/{record_id}/answer")
    def answer(request: Request, record_id: int, verdict: str = Form(...), boxes: str = Form("[]"),
               csrf: str = Form("")):
        user = inspector(request)
        check_csrf(request, csrf)
        if verdict == "skip":
            request.session["skipped"] = [*request.session.get("skipped", [])[-200:], record_id]
            return RedirectResponse("/inspect", status_code=303)
        try:
            drawn = json.loads(boxes or "[]")
            answers.answer(store_or_404(), record_id, user, verdict, drawn)
        except (json.JSONDecodeError, answers.FeedbackError) as exc:
            raise HTTPException(422, f"answer not stored: {exc}") from None
        return RedirectResponse("/inspect", status_code=303)


def _model_classes(inspection: Inspection, item: dict) -> list[str]:
    """The class names the model knows (from its export's model.json), so an inspector can name a missed one."""
    from defectops.components.deploy.verify import version_dir

    meta = version_dir(inspection.deploy_root, str(item["model_version"])) / "model.json"
    try:
        return list(json.loads(meta.read_text())["names"])
    except (OSError, KeyError, json.JSONDecodeError):
        return []
