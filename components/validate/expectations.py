"""The data contract as Great Expectations suites over the facts tables (images, boxes, classes).

Every expectation carries the name of the problem it detects (`meta.problem`): the report groups
by it, and the settings say which problems block the run outright (`validate.blocking`).
GE's COMPLETE result names each offending row by its index column (path, or class name).
"""

from __future__ import annotations

import logging

import pandas as pd

BOX_TOLERANCE = 1e-3  # normalised units: rounding in exported labels, not a real overflow

# A training image whose copy is in val or test, set aside so the held-out splits stay whole
# (validate.leakage: quarantine_train_copy).
TRAIN_COPY = "train_copy_of_held_out"
# Problems about one image (or its labels): that file is quarantined.
FILE_PROBLEMS = ("missing", "undecodable", "not_in_manifest", "changed_since_ingest", "unparseable_labels",
                 "image_size", "channels", "blank_image", "brightness_outlier", "contrast_outlier",
                 "duplicate_across_splits", "near_duplicate_across_splits", TRAIN_COPY, "unknown_class",
                 "box_outside_image", "degenerate_box", "box_count_outlier", "box_size_outlier")
# Problems about the dataset as a whole: nothing to quarantine, always blocking.
DATASET_PROBLEMS = ("too_few_examples", "duplicate_path")


def _with(problem: str, expectation):
    expectation.meta = {"problem": problem}
    return expectation


def image_suite(gx, limits: dict):
    e = gx.expectations
    suite = gx.ExpectationSuite(name="images")
    for column, problem in (("exists", "missing"), ("decodes", "undecodable"), ("in_manifest", "not_in_manifest"),
                            ("sha256_matches_manifest", "changed_since_ingest"),
                            ("labels_parse", "unparseable_labels")):
        suite.add_expectation(_with(problem, e.ExpectColumnValuesToBeInSet(column=column, value_set=[True])))
    for column in ("width", "height"):
        suite.add_expectation(_with("image_size", e.ExpectColumnValuesToBeBetween(
            column=column, min_value=limits["min_size"], max_value=limits["max_size"])))
    suite.add_expectation(_with("channels", e.ExpectColumnValuesToBeInSet(column="channels",
                                                                          value_set=limits["channels"])))
    # Blank = flat AND without any strong feature: a sparse two-level scan has a low SD but a full
    # grey-level range, so it is not blank; a capped or saturated frame has neither.
    suite.add_expectation(_with("blank_image", e.ExpectColumnValuesToBeBetween(
        column="contrast", min_value=limits["min_contrast"],
        row_condition=f"grey_range < {limits['blank_max_range']!r}", condition_parser="pandas")))
    for column, problem in (("brightness", "brightness_outlier"), ("contrast", "contrast_outlier")):
        low, high = limits[column]
        # Without a learned profile only lone images count: a sub-population is not an outlier.
        lone = {"row_condition": f"{column}_lone == True", "condition_parser": "pandas"} \
            if limits.get("lone_outliers_only") else {}
        suite.add_expectation(_with(problem, e.ExpectColumnValuesToBeBetween(column=column, min_value=low,
                                                                             max_value=high, **lone)))
    if limits.get("max_boxes_per_image") is not None:
        suite.add_expectation(_with("box_count_outlier", e.ExpectColumnValuesToBeBetween(
            column="n_boxes", max_value=limits["max_boxes_per_image"])))
    for column, problem in (("duplicate_of", "duplicate_across_splits"),
                            ("near_duplicate_of", "near_duplicate_across_splits"),
                            ("held_out_copy_of", TRAIN_COPY)):
        suite.add_expectation(_with(problem, e.ExpectColumnValuesToBeNull(column=column)))
    suite.add_expectation(_with("duplicate_path", e.ExpectColumnValuesToBeUnique(column="path")))
    return suite


def box_suite(gx, n_classes: int, limits: dict):
    e = gx.expectations
    suite = gx.ExpectationSuite(name="boxes")
    suite.add_expectation(_with("unknown_class", e.ExpectColumnValuesToBeBetween(
        column="class_id", min_value=0, max_value=n_classes - 1)))
    for column in ("left", "top", "right", "bottom"):
        suite.add_expectation(_with("box_outside_image", e.ExpectColumnValuesToBeBetween(
            column=column, min_value=-BOX_TOLERANCE, max_value=1 + BOX_TOLERANCE)))
    for column in ("box_width", "box_height"):
        suite.add_expectation(_with("degenerate_box", e.ExpectColumnValuesToBeBetween(
            column=column, min_value=0, strict_min=True)))
    if limits.get("box_side"):
        low, high = limits["box_side"]
        for column in ("box_width", "box_height"):
            suite.add_expectation(_with("box_size_outlier", e.ExpectColumnValuesToBeBetween(
                column=column, min_value=low, max_value=high)))
    return suite


def class_suite(gx, min_images: int):
    e = gx.expectations
    suite = gx.ExpectationSuite(name="classes")
    suite.add_expectation(_with("too_few_examples", e.ExpectColumnValuesToBeBetween(
        column="images", min_value=min_images)))
    return suite


def run_suites(images: pd.DataFrame, boxes: pd.DataFrame, classes: pd.DataFrame, limits: dict,
               n_classes: int) -> list[dict]:
    """Validate the three tables; one record per failed expectation, naming the offending rows."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("dataset")
    failures = []
    for name, frame, suite, index in (("images", images, image_suite(gx, limits), "path"),
                                      ("boxes", boxes, box_suite(gx, n_classes, limits), "path"),
                                      ("classes", classes, class_suite(gx, limits["min_images_per_class"]),
                                       "class_name")):
        if frame.empty:
            continue
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all").get_batch(
            batch_parameters={"dataframe": frame})
        suite = context.suites.add(suite)
        result = batch.validate(suite, result_format={"result_format": "COMPLETE",
                                                      "unexpected_index_column_names": [index]})
        for item in result.results:
            if item.success:
                continue
            config = item.expectation_config
            column = config.kwargs.get("column")
            rows = item.result.get("unexpected_index_list") or []
            failures.append({
                "problem": (config.meta or {}).get("problem", column),
                "table": name,
                "expectation": config.type,
                "column": column,
                "expected": {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")},
                "unexpected_count": item.result.get("unexpected_count", len(rows)),
                "files" if index == "path" else "classes": sorted({str(r[index]) for r in rows}),
                "values": [r.get(column) for r in rows][:20],
            })
    return failures
