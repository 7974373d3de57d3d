"""The page's tables: dash-ag-grid grids with formatted, numerically sorted numbers.

Rows travel as raw numbers and each column formats them in the browser (d3-format,
bundled with dash-ag-grid), so sorting compares numbers, not text: counts as integers,
metrics to 4 significant digits, probabilities to 3 decimals, dollars to cents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dash_ag_grid as dag

#: Column kinds and the d3-format each one's numbers get.
TEXT = "text"
COUNT = "count"
METRIC = "metric"
PROBABILITY = "probability"
USD = "usd"
MILLISECONDS = "ms"
_D3_FORMATS = {
    COUNT: ",.0f",
    METRIC: ".4~r",
    PROBABILITY: ".3f",
    USD: ",.2f",
    MILLISECONDS: ",.0f",
}
#: Column options for long text: wrapped on as many lines as it needs, at a text line's height.
WRAPPED: dict[str, Any] = {
    "wrapText": True,
    "autoHeight": True,
    "cellStyle": {"lineHeight": "18px", "paddingTop": "6px", "paddingBottom": "6px", "wordBreak": "normal"},
}
#: Metric columns holding magnitudes of at least this print as rounded integers (an RMSE of 1,234 USD).
_LARGE = 1000.0


def value_formatter(kind: str) -> dict[str, str] | None:
    """The ``valueFormatter`` of a column of ``kind`` (None for text).

    Parameters
    ----------
    kind : str
        One of :data:`TEXT`, :data:`COUNT`, :data:`METRIC`, :data:`PROBABILITY`,
        :data:`USD`, :data:`MILLISECONDS`.

    Returns
    -------
    dict or None
        ``{"function": "..."}``, evaluated by dash-ag-grid in the browser; blank for null.
    """
    spec = _D3_FORMATS.get(kind)
    if spec is None:
        return None
    return {"function": f"params.value == null ? '' : d3.format('{spec}')(params.value)"}


def column(field: str, header: str | None = None, kind: str = TEXT, **extra: Any) -> dict[str, Any]:
    """One column definition: ``field`` shown under ``header``, numbers right-aligned and formatted.

    Parameters
    ----------
    field : str
        Key of the row dicts.
    header : str, optional
        Header text; ``field`` by default.
    kind : str, default "text"
        See :func:`value_formatter`.
    **extra
        Further AG Grid column options (``wrapText``, ``minWidth``, ``cellStyle``...).

    Returns
    -------
    dict
    """
    col: dict[str, Any] = {"field": field, "headerName": header or field}
    formatter = value_formatter(kind)
    if formatter is not None:
        col["valueFormatter"] = formatter
        col["type"] = "numericColumn"
    return {**col, **extra}


def _kind(values: list[Any]) -> str:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers or len(numbers) < sum(v is not None for v in values):
        return TEXT
    if all(isinstance(v, int) for v in numbers):
        return COUNT
    return COUNT if max(abs(v) for v in numbers) >= _LARGE else METRIC


def infer_columns(
    rows: Sequence[dict[str, Any]], first: Iterable[str] = (), hidden: Iterable[str] = ("run_id",)
) -> list[dict[str, Any]]:
    """Column definitions for ``rows``: ``first`` in that order, then every other key as met.

    A column of ints is a :data:`COUNT`, one of floats a :data:`METRIC` (a :data:`COUNT`
    when its magnitudes reach 1,000), anything else :data:`TEXT`.

    Parameters
    ----------
    rows : sequence of dict
    first : iterable of str
        Keys to put first when present.
    hidden : iterable of str, default ("run_id",)
        Keys never shown.

    Returns
    -------
    list of dict
    """
    skip = set(hidden)
    keys = [k for k in first if k not in skip and any(k in r for r in rows)]
    for r in rows:
        keys += [k for k in r if k not in skip and k not in keys]
    cols = []
    for k in keys:
        values = [r.get(k) for r in rows]
        kind = _kind(values)
        # Room for the header and, for text, the longest value (about 8 px a character; bold rows need it).
        longest = max((len(str(v)) for v in values if v is not None), default=0) if kind == TEXT else 0
        cols.append(column(k, kind=kind, minWidth=min(320, max(8 * len(k) + 40, 8 * longest + 36, 80))))
    return cols


def grid(
    grid_id: str,
    columns: list[dict[str, Any]] | None = None,
    rows: list[dict[str, Any]] | None = None,
    *,
    sortable: bool = True,
    page_size: int | None = None,
    **props: Any,
) -> dag.AgGrid:
    """A grid in the page's style: as tall as its rows, every column rendered, sized to its content.

    Parameters
    ----------
    grid_id : str
        Component id (callbacks set its ``rowData`` and ``columnDefs``).
    columns : list of dict, optional
        From :func:`column` or :func:`infer_columns`.
    rows : list of dict, optional
    sortable : bool, default True
        Click a header to sort (ascending, descending, none).
    page_size : int, optional
        Rows per page; all rows on one page by default.
    **props
        Further ``AgGrid`` properties (``getRowStyle``, ``columnSize``...).

    Returns
    -------
    dash_ag_grid.AgGrid
    """
    options: dict[str, Any] = {
        "domLayout": "autoHeight",
        # Every column in the DOM: the tables are narrow, and a hidden column cannot be read or tested.
        "suppressColumnVirtualisation": True,
        "animateRows": False,
        "enableCellTextSelection": True,
    }
    if page_size:
        options |= {"pagination": True, "paginationPageSize": page_size, "paginationPageSizeSelector": False}
    settings: dict[str, Any] = {
        "columnSize": "autoSize",
        "style": {"height": None, "width": "100%"},
    }
    settings.update(props)
    return dag.AgGrid(
        id=grid_id,
        columnDefs=columns or [],
        rowData=rows or [],
        defaultColDef={"sortable": sortable, "resizable": True, "filter": False, "suppressMovable": True},
        dashGridOptions=options,
        **settings,
    )
