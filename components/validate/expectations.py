"""The data contract as a Great Expectations suite, run on per-image and per-box tables.

We compute facts about each file (does it decode, its size, its boxes) with PIL, then let GE
decide which facts break the contract; GE's result names the offending rows by path.
"""

from __future__ import annotations

import logging

import pandas as pd

BOX_TOLERANCE = 1e-3  # normalised units: rounding in exported labels, not a real overflow


def image_suite(gx, min_size: int, max_size: int):
    e = gx.expectations
    suite = gx.ExpectationSuite(name="images")
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="exists", value_set=[True]))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="in_manifest", value_set=[True]))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="sha256_matches_manifest", value_set=[True]))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="labels_parse", value_set=[True]))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="width", min_value=min_size, max_value=max_size))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="height", min_value=min_size, max_value=max_size))
    suite.add_expectation(e.ExpectColumnValuesToBeUnique(column="path"))
    return suite


def box_suite(gx, n_classes: int):
    e = gx.expectations
    suite = gx.ExpectationSuite(name="boxes")
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="class_id", min_value=0, max_value=n_classes - 1))
    for column in ("left", "top", "right", "bottom"):
        suite.add_expectation(e.ExpectColumnValuesToBeBetween(
            column=column, min_value=-BOX_TOLERANCE, max_value=1 + BOX_TOLERANCE))
    for column in ("box_width", "box_height"):
        suite.add_expectation(e.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
    return suite


def run_suites(images: pd.DataFrame, boxes: pd.DataFrame, min_size: int, max_size: int,
               n_classes: int) -> list[dict]:
    """Validate both tables; return one record per failed expectation with the offending paths."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("dataset")
    failures = []
    for name, frame, suite in (("images", images, image_suite(gx, min_size, max_size)),
                               ("boxes", boxes, box_suite(gx, n_classes))):
        if frame.empty:
            continue
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all").get_batch(
            batch_parameters={"dataframe": frame})
        suite = context.suites.add(suite)
        result = batch.validate(suite, result_format={"result_format": "COMPLETE",
                                                      "unexpected_index_column_names": ["path"]})
        for item in result.results:
            if item.success:
                continue
            config = item.expectation_config
            column = config.kwargs.get("column")
            rows = item.result.get("unexpected_index_list") or []
            failures.append({
                "table": name,
                "expectation": config.type,
                "column": column,
                "expected": {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")},
                "unexpected_count": item.result.get("unexpected_count", len(rows)),
                "files": sorted({str(r["path"]) for r in rows}),
                "values": [r.get(column) for r in rows][:20],
            })
    return failures
