"""Tables and numbers: counts as integers, metrics to 4 significant digits, sorted as numbers."""

from __future__ import annotations

import math

from dashboard import grids
from dashboard.components import format_number


def test_format_number_counts_as_integers_and_metrics_to_four_digits():
    assert format_number(95.0) == "95"  # a confusion-matrix count logged as an MLflow float
    assert format_number(7813) == "7,813"
    assert format_number(0.8421376543210987) == "0.8421"
    assert format_number(12.3456) == "12.35"
    assert format_number(1234.5678) == "1,235"
    assert format_number(0.000123456) == "0.0001235"
    assert format_number(None) == "n/a" and format_number(math.nan) == "n/a"
    assert format_number(25.04, " ms") == "25.04 ms"


def test_inferred_columns_format_ints_as_counts_and_floats_as_metrics():
    rows = [
        {"model": "gbm", "version": 3, "roc_auc": 0.8475123456789, "rmse": 1234.56789, "run_id": "x"},
        {"model": "lr", "version": 12, "roc_auc": 0.84, "rmse": 999.0},
    ]
    cols = {c["field"]: c for c in grids.infer_columns(rows, ["model", "roc_auc"])}
    assert list(cols) == ["model", "roc_auc", "version", "rmse"]  # first ones first, run_id hidden
    assert "valueFormatter" not in cols["model"]
    assert "',.0f'" in cols["version"]["valueFormatter"]["function"]
    assert "'.4~r'" in cols["roc_auc"]["valueFormatter"]["function"]
    assert "',.0f'" in cols["rmse"]["valueFormatter"]["function"]
    assert cols["roc_auc"]["type"] == "numericColumn"  # right-aligned; the grid sorts the raw numbers


def test_a_grid_is_sortable_unless_told_and_pages_when_asked():
    g = grids.grid("t", [grids.column("p", kind=grids.PROBABILITY)], [{"p": 0.5}], page_size=15)
    assert g.defaultColDef["sortable"] is True
    assert g.dashGridOptions["pagination"] is True and g.dashGridOptions["paginationPageSize"] == 15
    assert grids.grid("u", sortable=False).defaultColDef["sortable"] is False
    assert "'.3f'" in g.columnDefs[0]["valueFormatter"]["function"]
