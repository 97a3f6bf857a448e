"""Label Studio interop, by file: the queue out as tasks with the model's boxes as pre-annotations, and a
Label Studio JSON export back in as answers. No server is needed on either side.

Label Studio keeps rectangles in percent of the image (`x`, `y`, `width`, `height`, 0-100) with the
image's `original_width`/`original_height` beside them; the record id travels in the task's data, so
an export always finds the decision it is about. The labelling config these files assume is
`LABEL_CONFIG` (a RectangleLabels on `image` named `label`, and a Choices `verdict` good/defect).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from defectops import identity
from defectops.feedback.answers import ANSWERS, FeedbackError, answer, queue
from defectops.feedback.config import FeedbackConfig
from defectops.records.store import DecisionStore

LABEL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">{labels}</RectangleLabels>
  <Choices name="verdict" toName="image" choice="single"><Choice value="good"/><Choice value="defect"/></Choices>
</View>"""


def _size(uri: str) -> tuple[int, int]:
    with Image.open(uri) as im:
        return im.size


def tasks(config: FeedbackConfig, limit: int = 500, image_url_prefix: str = "") -> list[dict]:
    """The queue as Label Studio tasks (its JSON import format); the model's boxes are the pre-annotations."""
    store = DecisionStore(config.records_url)
    try:
        items = queue(store, config, limit=limit)
    finally:
        store.close()
    out = []
    for item in items:
        width, height = _size(item["image_uri"])
        result = [{"id": f"m{i}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                   "original_width": width, "original_height": height, "image_rotation": 0, "score": b["score"],
                   "value": {"x": 100 * b["box"][0] / width, "y": 100 * b["box"][1] / height,
                             "width": 100 * (b["box"][2] - b["box"][0]) / width,
                             "height": 100 * (b["box"][3] - b["box"][1]) / height, "rotation": 0,
                             "rectanglelabels": [b["class_name"]]}}
                  for i, b in enumerate(item["boxes"])]
        out.append({"data": {"image": image_url_prefix + item["image_uri"], "record_id": item["id"],
                             "decision": item["decision"], "score": item["score"], "threshold": item["threshold"],
                             "model_version": item["model_version"], "part_id": item["part_id"]},
                    "predictions": [{"model_version": f"defectops v{item['model_version']}", "score": item["score"],
                                     "result": result}]})
    return out


def _annotator(annotation: dict, where: str) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    if who in (None, ""):
        raise FeedbackError(f"{where}: the annotation names no annotator ('completed_by'); answers are recorded "
                            "under a person")
    return identity.normalise(str(who) if not isinstance(who, int) else f"label studio user {who}")


def _boxes(results: list[dict], where: str) -> list[dict]:
    boxes = []
    for r in results:
        if r.get("type") != "rectanglelabels":
            continue
        try:
            v, width, height = r["value"], float(r["original_width"]), float(r["original_height"])
            x1, y1 = v["x"] * width / 100, v["y"] * height / 100
            boxes.append({"class_name": v["rectanglelabels"][0],
                          "box": [x1, y1, x1 + v["width"] * width / 100, y1 + v["height"] * height / 100]})
        except (KeyError, IndexError, TypeError, ValueError):
            raise FeedbackError(f"{where}: a rectangle lacks value.x/y/width/height/rectanglelabels or "
                                "original_width/height (expected Label Studio's JSON export)") from None
    return boxes


def _verdict(results: list[dict], boxes: list[dict]) -> str:
    for r in results:
        if r.get("type") == "choices" and r.get("value", {}).get("choices"):
            return str(r["value"]["choices"][0]).strip().lower()
    return "defect" if boxes else "good"


def import_export(config: FeedbackConfig, path: Path) -> dict:
    """Answers from a Label Studio JSON export; a task without a finished annotation is left for later."""
    try:
        exported = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FeedbackError(f"{path}: not a readable JSON file ({exc}); expected Label Studio's JSON export "
                            "(a list of tasks)") from None
    if not isinstance(exported, list):
        raise FeedbackError(f"{path}: expected a list of tasks (Label Studio's JSON export), got "
                            f"{type(exported).__name__}")
    counts = {"answered": 0, "not annotated": 0}
    parsed = []  # every task is read before any answer is written: a bad file changes nothing
    for n, task in enumerate(exported):
        where = f"{path}: task {n}"
        record_id = (task.get("data") or {}).get("record_id") if isinstance(task, dict) else None
        if not isinstance(record_id, int):
            raise FeedbackError(f"{where}: data.record_id missing; export tasks with 'defectops feedback "
                                "labelstudio-export' so each one names its decision")
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not done:
            counts["not annotated"] += 1
            continue
        results = done[-1].get("result") or []
        boxes = _boxes(results, where)
        verdict = _verdict(results, boxes)
        if verdict not in ANSWERS:
            raise FeedbackError(f"{where}: verdict {verdict!r}; expected a 'verdict' choice of "
                                f"{' or '.join(ANSWERS)}")
        parsed.append((record_id, _annotator(done[-1], where), verdict, boxes))
    store = DecisionStore(config.records_url)
    try:
        for record_id, who, verdict, boxes in parsed:
            answer(store, record_id, who, verdict, boxes, source="labelstudio")
            counts["answered"] += 1
    finally:
        store.close()
    return counts
