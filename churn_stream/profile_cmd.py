"""``churn profile``: draft a dataset profile from a CSV, check one, print the profile JSON Schema.

``churn profile infer CSV --label COLUMN`` reads the table with Arrow's CSV type inference and
decides each column's type and feature role, printing every decision with its reason, so a
user reviews a profile instead of writing one. The rules:

- Field names are the snake_case of the headers (``customerID`` -> ``customer_id``,
  ``Total Day Minutes`` -> ``total_day_minutes``); a blank header is ``column_<position>``.
- The label reads as yes/no, 1/0 (also 1.0/0.0), true/false, or listed positive values
  (``--positive``; with two values and none given, the rarer one is taken as churned).
- A column unique in every row is an identifier, excluded from the features (a row number
  carries no signal); the ``--id`` column is the customer id. Without ``--id`` ids are derived
  from the row (:mod:`schemas.profile_model`).
- Numbers that look like numbers but are codes: an integer column is a category when its
  values have leading zeros (``007``), or when it has at most :data:`CODE_MAX_LEVELS`
  distinct values spread over more than twice as many integers (``512/1024/2048``,
  ``408/415/510``: codes, not counts). Contiguous small integers (``0..9`` calls, ``1..5``
  levels) stay numeric: their order means something. Text such as ``10-50`` or ``1,000+``
  is not a number to Arrow and becomes a category, said so in the reason.
- Text with at most :data:`CATEGORY_MAX_LEVELS` values is a category; more is excluded
  (one-hot over hundreds of values is noise). Dates are excluded (they re-encode time).
- Blanks: numbers keep NaN (the featuriser imputes the median); a category's blanks read as
  ``missing``; an integer column with blanks becomes a number.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

#: An integer column with at most this many distinct values, spread over more than twice as
#: many integers, holds codes: a category.
CODE_MAX_LEVELS = 20
#: Text columns with more distinct values than this are excluded rather than one-hot encoded.
CATEGORY_MAX_LEVELS = 100
_NUMERIC_LOOKING = re.compile(r"^[\d\s.,:<>=+%$€£-]+$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class InferError(ValueError):
    """The CSV or the options do not allow a draft (unknown label column, unreadable file, ...)."""


def _column_facts(text, typed) -> dict[str, Any]:
    """Counts the decisions need: blanks, distinct values, a few samples (text trimmed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim_whitespace(text)
    blank = int(pc.sum(pc.equal(trimmed, "")).as_py() or 0)
    nonblank = pc.filter(trimmed, pc.not_equal(trimmed, ""))
    distinct = pc.unique(nonblank)
    values = distinct.to_pylist() if len(distinct) <= 1000 else []
    return {
        "rows": len(text),
        "blank": blank,
        "distinct": len(distinct),
        "values": values,
        # Case-folded distinct values; None when there are too many to be a flag, a label or a category.
        "lower": {str(v).casefold() for v in values} if values else None,
        "leading_zero": bool(pc.any(pc.match_substring_regex(nonblank, r"^-?0\d")).as_py()),
        "type": typed.type if typed is not None else pa.string(),
        "typed": typed,
        "nonblank": nonblank,
    }


def _only(lower: set[str] | None, allowed: set[str]) -> bool:
    """True when the column's case-folded values are all in ``allowed``."""
    return lower is not None and lower <= allowed


def _as_numbers(nonblank) -> Any:
    """Float64 of trimmed non-blank text, or None if any cell is not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(nonblank, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _label_field(name: str, column: str, facts: dict[str, Any], positive: tuple[str, ...]) -> tuple[dict, dict, str]:
    """(field spec, label spec, reason) of the label column."""
    lower = facts["lower"]
    if facts["blank"]:
        raise InferError(f"label {column!r} has {facts['blank']} blank cell(s); every row needs a label")
    if positive:
        missing = [v for v in positive if v.casefold() not in (lower or set())]
        if missing:
            raise InferError(f"--positive {missing!r} not among the label's values {sorted(facts['values'])!r}")
        return (
            {"column": column, "name": name, "type": "category"},
            {"field": name, "positive_values": list(positive)},
            f"label, churned when one of {list(positive)!r}",
        )
    if _only(lower, {"yes", "no"}):
        return {"column": column, "name": name, "type": "yes_no"}, {"field": name}, "label, yes/no"
    if _only(lower, {"0", "1", "0.0", "1.0"}):
        spec = {"column": column, "name": name, "type": "boolean", "encoding": "one_zero"}
        return spec, {"field": name}, "label, 1/0"
    if _only(lower, {"true", "false"}):
        spec = {"column": column, "name": name, "type": "boolean", "encoding": "true_false"}
        return spec, {"field": name}, "label, true/false"
    if facts["distinct"] == 2:
        import pyarrow.compute as pc

        counts = pc.value_counts(facts["nonblank"]).to_pylist()
        rarer = min(counts, key=lambda c: (c["counts"], str(c["values"])))["values"]
        return (
            {"column": column, "name": name, "type": "category"},
            {"field": name, "positive_values": [rarer]},
            f"label, churned when {rarer!r} (the rarer of 2 values; --positive to choose)",
        )
    raise InferError(
        f"label {column!r} has {facts['distinct']} values {sorted(map(str, facts['values']))[:10]!r}: "
        "name the churned ones with --positive"
    )


def _decide(name: str, column: str, facts: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """(field spec, role, reason) of an ordinary column; role is numeric, categorical or excluded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows, blank, distinct, lower = facts["rows"], facts["blank"], facts["distinct"], facts["lower"]
    spec: dict[str, Any] = {"column": column, "name": name}
    blanks = f", {blank} blanks" if blank else ""
    if distinct == 0:
        spec.update(type="category", missing={"blank": "fill", "value": "missing"})
        return spec, "excluded", "category, every cell blank: excluded"
    numbers = _as_numbers(facts["nonblank"])
    kind = facts["type"]
    if numbers is not None and (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_string(kind)):
        integral = bool((numbers == numbers.round()).all())
        if _only(lower, {"0", "1", "0.0", "1.0"}) and not blank:
            spec.update(type="boolean", encoding="one_zero")
            return spec, "numeric", "boolean, 0/1 flag"
        negative = bool((numbers < 0).any())
        if negative:
            spec["non_negative"] = False
        texts = [str(v) for v in facts["values"]]
        if integral and facts["leading_zero"]:
            spec.update(type="category")
            if blank:
                spec["missing"] = {"blank": "fill", "value": "missing"}
            spec.pop("non_negative", None)
            return spec, "categorical", f"category, {distinct} codes with leading zeros{blanks}"
        if integral and distinct == rows and rows > CODE_MAX_LEVELS:
            spec.update(type="integer")
            return spec, "excluded", "integer, unique in every row: an identifier, excluded"
        spread = float(numbers.max() - numbers.min()) + 1
        if integral and 2 < distinct <= CODE_MAX_LEVELS and spread > 2 * distinct:
            spec.update(type="category")
            spec.pop("non_negative", None)
            if blank:
                spec["missing"] = {"blank": "fill", "value": "missing"}
            shown = ", ".join(sorted(texts, key=float)[:4])
            return (
                spec,
                "categorical",
                f"category, {distinct} numeric codes ({shown}{', ...' if distinct > 4 else ''}) "
                f"spread over {int(spread)} integers: codes, not amounts{blanks}",
            )
        if integral and not blank:
            spec.update(type="integer")
            sign = ", has negatives" if negative else ""
            return spec, "numeric", f"integer, {distinct} values{sign}"
        spec.update(type="number")
        if blank:
            whole = " (whole numbers, but an integer cannot be blank)" if integral else ""
            return spec, "numeric", f"number, {blank} blanks, NaN where blank{whole}"
        return spec, "numeric", f"number, {distinct} values"
    if pa.types.is_boolean(kind) or (_only(lower, {"true", "false"}) and not blank):
        spec.update(type="boolean", encoding="true_false")
        return spec, "numeric", "boolean, true/false"
    if _only(lower, {"yes", "no"}) and not blank:
        spec.update(type="yes_no")
        return spec, "numeric", "yes_no, Yes/No"
    texts = [str(v) for v in facts["values"]]
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind) or (texts and all(_ISO_DATE.match(t) for t in texts)):
        iso = pc.all(pc.match_substring_regex(facts["nonblank"], _ISO_DATE.pattern)).as_py()
        if iso and not blank:
            spec.update(type="date")
            return spec, "excluded", "date, ISO YYYY-MM-DD: excluded (dates re-encode time)"
        spec.update(type="category", missing={"blank": "fill", "value": "missing"})
        return spec, "excluded", f"category, date or time text (not ISO dates, or blank): excluded{blanks}"
    spec.update(type="category")
    if blank:
        spec["missing"] = {"blank": "fill", "value": "missing"}
    if distinct == rows and rows > CATEGORY_MAX_LEVELS:
        spec["type"] = "identifier"
        spec.pop("missing", None)
        return spec, "excluded", "identifier, unique text in every row: excluded"
    if distinct > CATEGORY_MAX_LEVELS:
        return spec, "excluded", f"category, {distinct} values: too many to one-hot, excluded{blanks}"
    looks = ""
    if texts and all(_NUMERIC_LOOKING.match(t) for t in texts):
        looks = f" (numeric-looking text such as {texts[0]!r}: ranges or bands, not numbers)"
    return spec, "categorical", f"category, {distinct} values{looks}{blanks}"


def infer_profile(
    csv_path: str | Path,
    *,
    label: str,
    id_column: str | None = None,
    value: str | None = None,
    positive: tuple[str, ...] = (),
    name: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Draft a profile from a CSV.

    Parameters
    ----------
    csv_path : str or Path
    label : str
        Header of the churn label column (matched as ingestion matches headers).
    id_column, value : str, optional
        Headers of the customer id and of the customer-value target.
    positive : tuple of str
        Label values meaning churned (for a label that is not yes/no, 1/0 or true/false).
    name : str, optional
        Profile name; default the file's stem in snake_case.

    Returns
    -------
    profile : dict
        The drafted profile, valid under :class:`schemas.profile_model.ProfileSpec`.
    decisions : list of str
        One line per column: ``"<field>: <type>, <reason>"``.

    Raises
    ------
    InferError
        On an unreadable file, unknown columns, or a label/id/value that cannot be one.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from batch.ingest import IngestError, normalise_header, read_header
    from schemas.profile_model import snake_case
    from schemas.profiles import ProfileError, parse_profile

    path = Path(csv_path)
    if not path.is_file():
        raise InferError(f"{path}: no such file")
    try:
        raw_names = read_header(path)
    except IngestError as exc:
        raise InferError(str(exc)) from None
    if not raw_names:
        raise InferError(f"{path}: empty input")
    keys = [normalise_header(n) for n in raw_names]

    def find(option: str, header: str | None) -> int | None:
        if header is None:
            return None
        key = normalise_header(header)
        if key not in keys:
            raise InferError(f"{option} {header!r} is not a column; columns: {raw_names!r}")
        return keys.index(key)

    label_at, id_at, value_at = find("--label", label), find("--id", id_column), find("--value", value)
    if len({i for i in (label_at, id_at, value_at) if i is not None}) < sum(
        i is not None for i in (label_at, id_at, value_at)
    ):
        raise InferError("--label, --id and --value must name different columns")
    names = [f"c{i}" for i in range(len(raw_names))]
    read = pa_csv.ReadOptions(skip_rows=1, column_names=names)
    try:
        typed: pa.Table | None = pa_csv.read_csv(path, read_options=read)
    except pa.ArrowInvalid:
        typed = None  # Arrow's inference met a late cell of another type: decide from the text alone
    try:
        text = pa_csv.read_csv(
            path,
            read_options=read,
            convert_options=pa_csv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InferError(f"{path}: not a readable CSV ({exc})") from None
    if text.num_rows == 0:
        raise InferError(f"{path}: header only, no data rows")

    fields: list[dict[str, Any]] = []
    decisions: list[str] = []
    roles: dict[str, list[str]] = {"numeric": [], "categorical": [], "excluded": []}
    label_spec: dict[str, Any] = {}
    used: set[str] = set()
    for i, column in enumerate(raw_names):
        base = field_name = snake_case(column) or f"column_{i + 1}"
        k = 2
        while field_name in used:
            field_name, k = f"{base}_{k}", k + 1
        used.add(field_name)
        facts = _column_facts(text.column(i), typed.column(i) if typed is not None else None)
        if i == label_at:
            spec, label_spec, reason = _label_field(field_name, column, facts, positive)
        elif i == id_at:
            if facts["blank"] or facts["distinct"] != facts["rows"]:
                raise InferError(f"--id {column!r} is not unique and non-blank in every row")
            spec, reason = {"column": column, "name": field_name, "type": "identifier"}, "identifier, the customer id"
        else:
            spec, role, reason = _decide(field_name, column, facts)
            if i == value_at:
                if spec["type"] not in ("integer", "number"):
                    raise InferError(f"--value {column!r} is {spec['type']}, not a number")
                reason += "; the customer-value target"
            roles[role].append(field_name)
        fields.append(spec)
        decisions.append(f"{field_name}: {reason}")
    id_spec: dict[str, Any] = {"column": raw_names[id_at]} if id_at is not None else {"column": None}
    if id_at is None:
        id_spec["field"] = "customer_id" if "customer_id" not in used else "row_id"
        decisions.append(f"{id_spec['field']}: identifier, derived from each row (no --id)")
    profile = {
        "format_version": 1,
        "name": name or (snake_case(path.stem).replace("_", "-") or "profile"),
        "description": f"Drafted by `churn profile infer` from {path.name} ({text.num_rows} rows); review it.",
        "text": {"unicode_form": "NFKC", "trim": True, "casefold": True},
        "id": id_spec,
        "label": label_spec,
        "value_target": fields[value_at]["name"] if value_at is not None else None,
        "fields": fields,
        "features": roles,
    }
    if value_at is None:
        decisions.append("value target: none (--value not given): no regressor is trained")
    try:
        parse_profile(profile, str(path))
    except ProfileError as exc:  # a rule above disagrees with the model: a bug, shown as such
        raise InferError(f"drafted profile does not validate: {exc}") from None
    return profile, decisions


@click.group(name="profile")
def profile() -> None:
    """Dataset profiles: draft one from a CSV, check one, print the format's JSON Schema."""


@profile.command("infer")
@click.argument("csv_path", metavar="CSV", type=click.Path(path_type=Path))
@click.option("--label", required=True, help="Header of the churn label column.")
@click.option("--id", "id_column", default=None, help="Header of the customer id (default: ids derived from rows).")
@click.option("--value", default=None, help="Header of the customer-value target (default: no regressor).")
@click.option("--positive", multiple=True, help="A label value meaning churned (repeatable).")
@click.option("--name", default=None, help="Profile name (default: from the file name).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the profile here (default: stdout).")
def infer_cmd(
    csv_path: Path,
    label: str,
    id_column: str | None,
    value: str | None,
    positive: tuple[str, ...],
    name: str | None,
    out: Path | None,
) -> None:
    """Draft a profile from CSV, printing each decision (to stderr) with its reason."""
    from schemas.profiles import dump_profile_yaml

    try:
        drafted, decisions = infer_profile(
            csv_path, label=label, id_column=id_column, value=value, positive=positive, name=name
        )
    except InferError as exc:
        raise click.ClickException(str(exc)) from None
    for line in decisions:
        click.echo(line, err=True)
    text = f"# Drafted by `churn profile infer {csv_path.name}`: review every decision.\n" + dump_profile_yaml(
        {k: v for k, v in drafted.items() if v is not None}
    )
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out}", err=True)


@profile.command("check")
@click.argument("profile_path", metavar="FILE", type=click.Path(path_type=Path))
@click.argument("csv_path", metavar="[CSV]", required=False, type=click.Path(path_type=Path))
def check_cmd(profile_path: Path, csv_path: Path | None) -> None:
    """Validate a profile file (a shipped name works too), and a CSV against it if given.

    Every mismatch is printed on its own line; the exit code is 1 if there is any.
    """
    from batch.ingest import IngestError, check_source_csv, match_header, read_header, read_source_csv
    from schemas.profiles import ProfileError, get_profile

    if profile_path.suffix and not profile_path.is_file():
        raise click.ClickException(f"{profile_path}: no such profile file")
    try:
        loaded = get_profile(profile_path if profile_path.suffix else str(profile_path))
    except ProfileError as exc:
        lines = str(exc).splitlines()
        for line in lines:
            click.echo(line)
        raise click.ClickException(f"{profile_path}: {len(lines)} problem(s)") from None
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    click.echo(
        f"ok: profile {loaded.name!r}: {len(loaded.spec.fields)} fields, {len(loaded.features)} features, "
        f"label {loaded.classification_target}, value target {loaded.regression_target or 'none'}"
    )
    if csv_path is None:
        return
    if not csv_path.is_file():
        raise click.ClickException(f"{csv_path}: no such file")
    try:
        frame = read_source_csv(csv_path, loaded)
    except IngestError:
        problems = check_source_csv(csv_path, loaded)
        for line in problems:
            click.echo(line)
        raise click.ClickException(f"{csv_path}: {len(problems)} mismatch(es) with profile {loaded.name!r}") from None
    _, _, unexpected = match_header(read_header(csv_path), loaded)
    if unexpected:
        click.echo(f"{csv_path}: unexpected columns {unexpected!r} (ingestion ignores them)")
        raise click.ClickException(f"{csv_path}: 1 mismatch(es) with profile {loaded.name!r}")
    churned = float(frame[loaded.classification_target].mean())
    click.echo(f"ok: {csv_path}: {len(frame)} rows ingest, {churned:.1%} churned")


@profile.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of profile files."""
    from schemas.profile_model import profile_json_schema

    json.dump(profile_json_schema(), sys.stdout, indent=2)
    click.echo()
