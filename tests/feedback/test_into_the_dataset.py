"""Answers out as a dataset version and back in through ingest; Label Studio files both ways."""

from __future__ import annotations

import json

import pytest

from defectops.components.ingest.step import IngestConfig, ingest
from defectops.dataset import DatasetError, label_path, read_labels, read_manifest, read_names, read_provenance
from defectops.feedback import answers
from defectops.feedback.config import FeedbackConfig
from defectops.feedback.export import export
from defectops.feedback.labelstudio import import_export, tasks
from defectops.records.archive import ImageArchive
from defectops.records.store import DecisionStore

from .test_answers import decide


@pytest.fixture
def answered_store(tmp_path):
    """Five decided images: two answered defect by ines (one twice, the same part), one good, one defect without
    a box, one unanswered; a sixth decision of the same bytes as the first."""
    store = DecisionStore(tmp_path / "decisions.db")
    archive = ImageArchive(tmp_path / "archive")
    ids = store.record_many([decide(i, "review", 0.3, archive, part_id=f"P-{i // 2}") for i in range(5)])
    answers.answer(store, ids[0], "ines", "defect", [{"class_name": "scratch", "box": [2, 4, 12, 20]}])
    answers.answer(store, ids[1], "ines", "defect", [{"class_name": "scratch", "box": [0, 0, 48, 10]},
                                                     {"class_name": "pit", "box": [30, 30, 40, 44]}])
    answers.answer(store, ids[2], "qa.lead", "good")
    answers.answer(store, ids[3], "ines", "defect")  # no box: a count, not a label
    store.close()
    return FeedbackConfig(records_url=str(tmp_path / "decisions.db")), ids


def test_export_writes_a_train_only_canonical_set_with_provenance(answered_store, tmp_path):
    config, _ = answered_store
    result = export(config, tmp_path / "feedback", track=False)
    out = tmp_path / "feedback"
    rows = read_manifest(out)
    assert {r["split"] for r in rows} == {"train"} and len(rows) == 3 == result["images"]
    assert result["not_exported"] == {"defect without a box": 1}
    assert read_names(out) == ["pit", "scratch"]
    by_group = {r["group"] for r in rows}
    assert by_group == {"part:P-0", "part:P-1"}  # the part's views stay together
    two = next(r for r in rows if r["n_boxes"] == "2")
    boxes = read_labels(label_path(out, two["path"]))
    assert [b.cls for b in boxes] == [1, 0]
    assert boxes[0].to_pixels(48, 48) == pytest.approx((0, 0, 48, 10), abs=1e-3)
    assert read_provenance(out)["feedback"] | {"exported_at": None} == {
        "images": 3, "labellers": ["ines", "qa.lead"], "good": 1, "defect": 2, "last_answer_id": 4,
        "exported_at": None}


def test_ingest_merges_feedback_into_train_by_class_name(answered_store, tmp_path):
    config, _ = answered_store
    export(config, tmp_path / "feedback", track=False)
    base = IngestConfig(n_images=24, image_size=48, seed=3)
    plain = ingest(base, tmp_path / "plain")
    merged = ingest(base.model_copy(update={"extra_sources": [tmp_path / "feedback"]}), tmp_path / "merged")
    assert merged["per_split"]["train"] == plain["per_split"]["train"] + 3
    assert merged["per_split"]["test"] == plain["per_split"]["test"]  # the yardstick does not move
    assert merged["feedback_images"] == 3 and merged["feedback_labellers"] == ["ines", "qa.lead"]
    names = read_names(tmp_path / "merged")
    row = next(r for r in read_manifest(tmp_path / "merged") if r["n_boxes"] == "2")
    assert [names[b.cls] for b in read_labels(label_path(tmp_path / "merged", row["path"]))] == ["scratch", "pit"]
    assert row["group"].startswith("feedback:part:")

    (tmp_path / "feedback" / "dataset.yaml").write_text("names: [scratch, burr]\n")
    with pytest.raises(DatasetError, match=r"feedback/dataset.yaml has classes \['burr'\]"):
        ingest(base.model_copy(update={"extra_sources": [tmp_path / "feedback"]}), tmp_path / "bad")
    with pytest.raises(DatasetError, match="is not a canonical dataset"):
        ingest(base.model_copy(update={"extra_sources": [tmp_path]}), tmp_path / "bad")


def test_label_studio_tasks_carry_the_model_boxes_and_an_export_comes_back_as_answers(tmp_path):
    store = DecisionStore(tmp_path / "decisions.db")
    ids = store.record_many([decide(i, "review", 0.35, ImageArchive(tmp_path / "archive")) for i in range(3)])
    store.close()
    config = FeedbackConfig(records_url=str(tmp_path / "decisions.db"))
    made = tasks(config)
    assert [t["data"]["record_id"] for t in made] == sorted(ids, reverse=True)
    value = made[0]["predictions"][0]["result"][0]["value"]
    assert value["rectanglelabels"] == ["scratch"]
    assert (value["x"], value["width"]) == pytest.approx((100 * 4 / 48, 100 * 16 / 48))

    # What Label Studio exports once annotators are done (its JSON export format), made here.
    def rect(x, y, w, h, label):
        return {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 48,
                "original_height": 48, "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                                                 "rectanglelabels": [label]}}
    exported = [
        {**made[0], "annotations": [{"completed_by": {"id": 7, "email": "Ines@plant.example"},
                                     "result": [rect(25, 25, 50, 50, "scratch")]}]},
        {**made[1], "annotations": [{"completed_by": 3, "result": [
            {"type": "choices", "value": {"choices": ["good"]}, "from_name": "verdict", "to_name": "image"}]}]},
        {**made[2], "annotations": [{"completed_by": 3, "was_cancelled": True, "result": []}]},
    ]
    (tmp_path / "ls.json").write_text(json.dumps(exported))
    assert import_export(config, tmp_path / "ls.json") == {"answered": 2, "not annotated": 1}
    store = DecisionStore(tmp_path / "decisions.db")
    stored = {a["record_id"]: a for a in answers.answered(store)}
    assert stored[made[0]["data"]["record_id"]]["boxes"] == [{"class_name": "scratch", "box": [12.0, 12.0, 36.0, 36.0]}]
    assert stored[made[0]["data"]["record_id"]]["inspector"] == "ines@plant.example"
    assert stored[made[1]["data"]["record_id"]]["answer"] == "good"
    assert stored[made[1]["data"]["record_id"]]["source"] == "labelstudio"

    broken = [exported[0], {"data": {"image": "x.png"}, "annotations": []}]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(answers.FeedbackError, match="task 1: data.record_id missing"):
        import_export(config, tmp_path / "broken.json")
    (tmp_path / "notjson.json").write_text("{")
    with pytest.raises(answers.FeedbackError, match="not a readable JSON file"):
        import_export(config, tmp_path / "notjson.json")
