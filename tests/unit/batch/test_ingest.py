"""Reading the source CSV: explicit types, the tenure-0 blank TotalCharges rule, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batch.ingest import (
    IngestError,
    arrow_schema,
    check_source_csv,
    derive_ids,
    normalise_header,
    read_source_csv,
    to_arrow,
)
from schemas.profiles import TELCO, parse_profile

#: Digest of the typed Telco table (values and Arrow types of every column) as main's code-defined
#: profile produced it before profiles became files (schemas/profiles.py at 8f8a6c9).
TELCO_TABLE_DIGEST = "1d5269a71d3455060c8a7abe9719b6fbeadd6450cff19f0273d2c4a4122c6ed7"

#: Customers in the shipped file whose TotalCharges is blank (all with tenure 0).
BLANK_TOTAL_IDS = {
    "4472-LVYGI",
    "3115-CZMZD",
    "5709-LVOEQ",
    "4367-NUYAO",
    "1371-DWPAZ",
    "7644-OMVMY",
    "3213-VVOLG",
    "2520-SGTTA",
    "2923-ARZLG",
    "4075-WKNIU",
    "2775-SEFEE",
}


@pytest.fixture(scope="module")
def frame(telco_csv) -> pd.DataFrame:
    return read_source_csv(telco_csv, TELCO)


@pytest.fixture(scope="module")
def lines(telco_csv) -> list[str]:
    """The shipped file's lines (header first), without line endings."""
    return Path(telco_csv).read_text(encoding="utf-8").splitlines()


def write(tmp_path: Path, lines: list[str], name: str = "src.csv", prefix: bytes = b"") -> Path:
    path = tmp_path / name
    path.write_bytes(prefix + ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def set_field(line: str, column: str, value: str, header: str) -> str:
    names = header.split(",")
    # The Telco file quotes nothing, so a plain split is exact.
    cells = line.split(",")
    assert len(cells) == len(names)
    cells[names.index(column)] = value
    return ",".join(cells)


def get_field(line: str, column: str, header: str) -> str:
    return line.split(",")[header.split(",").index(column)]


def test_shipped_file_has_7043_rows_and_event_field_names(frame):
    assert len(frame) == 7043
    assert list(frame.columns) == list(TELCO.source_columns.values())
    assert frame["customer_id"].is_unique


def test_dtypes_follow_arrow_schema(frame):
    schema = arrow_schema(TELCO)
    assert schema.names == list(frame.columns)
    for f in schema:
        col = frame[f.name]
        assert not col.isna().any(), f.name
        if f.type == pa.string():
            assert pd.api.types.is_string_dtype(col) or col.dtype == object, f.name
            assert all(isinstance(v, str) and v == v.strip() and v for v in col), f.name
        elif f.type == pa.int64():
            assert col.dtype == np.int64, f.name
        elif f.type == pa.float64():
            assert col.dtype == np.float64, f.name
        elif f.type == pa.bool_():
            assert col.dtype == np.bool_, f.name
        else:  # pragma: no cover - a new type needs a new branch here
            pytest.fail(f"unexpected arrow type {f.type} for {f.name}")
    assert not any(f.nullable for f in schema)


def test_known_values_of_first_rows(frame):
    first = frame.iloc[0]
    assert first["customer_id"] == "7590-VHVEG"
    assert first["senior_citizen"] == False  # noqa: E712 - numpy bool
    assert first["partner"] == True  # noqa: E712
    assert first["tenure_months"] == 1
    assert first["monthly_charges_usd"] == 29.85
    assert first["churned"] == False  # noqa: E712
    # Shipped label balance of IBM's sample: 1,869 churners.
    assert int(frame["churned"].sum()) == 1869
    assert int(frame["senior_citizen"].sum()) == 1142


def test_blank_total_charges_are_exactly_the_tenure_zero_customers(frame, lines):
    header = lines[0]
    blank_in_file = {
        get_field(x, "customerID", header) for x in lines[1:] if get_field(x, "TotalCharges", header).strip() == ""
    }
    assert blank_in_file == BLANK_TOTAL_IDS
    tenure0 = frame["tenure_months"] == 0
    assert int(tenure0.sum()) == 11
    assert set(frame.loc[tenure0, "customer_id"]) == BLANK_TOTAL_IDS
    assert (frame.loc[tenure0, "total_charges_usd"] == 0.0).all()
    # Everybody else has a real, positive total.
    assert (frame.loc[~tenure0, "total_charges_usd"] > 0).all()
    assert int((frame["total_charges_usd"] == 0.0).sum()) == 11
    assert not np.isnan(frame["total_charges_usd"].to_numpy()).any()


def test_blank_total_charges_with_tenure_raises(tmp_path, lines):
    header = lines[0]
    # Data row 3 (customer 3668-QPYBK, tenure 2) loses its TotalCharges.
    assert get_field(lines[3], "tenure", header) == "2"
    bad = list(lines)
    bad[3] = set_field(bad[3], "TotalCharges", " ", header)
    with pytest.raises(IngestError) as info:
        read_source_csv(write(tmp_path, bad), TELCO)
    msg = str(info.value)
    assert msg.startswith("TotalCharges: ")
    assert "tenure 0" in msg
    assert "data row 3" in msg
    assert "(1 bad value(s) in all)" in msg


def test_bom_and_spaces_in_header_are_accepted(tmp_path, lines, frame):
    header = ",".join(f"  {name} " for name in lines[0].split(","))
    path = write(tmp_path, [header] + lines[1:101], prefix=b"\xef\xbb\xbf")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    got = read_source_csv(path, TELCO)
    assert list(got.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(got, frame.iloc[:100].reset_index(drop=True))


def test_crlf_line_endings_are_accepted(tmp_path, lines, frame):
    path = tmp_path / "crlf.csv"
    path.write_bytes(("\r\n".join(lines[:21]) + "\r\n").encode())
    got = read_source_csv(path, TELCO)
    pd.testing.assert_frame_equal(got, frame.iloc[:20].reset_index(drop=True))


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(IngestError, match="file is empty"):
        read_source_csv(path, TELCO)


def test_header_only_file_raises(tmp_path, lines):
    with pytest.raises(IngestError, match="header only, no data rows"):
        read_source_csv(write(tmp_path, lines[:1]), TELCO)


def test_missing_column_raises_listing_missing_and_unexpected(tmp_path, lines):
    header = lines[0].replace("Contract", "Kontrakt").replace("gender", "gen\u200bder")
    with pytest.raises(IngestError) as info:
        read_source_csv(write(tmp_path, [header] + lines[1:5]), TELCO)
    assert str(info.value).endswith(
        "missing columns ['gender', 'Contract']; unexpected columns ['gen\\u200bder', 'Kontrakt']"
    )


def test_headers_match_after_nfkc_bom_trim_and_casefold(tmp_path, lines, frame):
    names = lines[0].split(",")
    names[0] = "\ufeff CUSTOMERID"  # a second BOM inside the cell, upper case, a space
    names[5] = "Ｔｅｎｕｒｅ"  # full-width letters: NFKC makes them ASCII
    names[16] = "paperlessbilling\t"
    path = write(tmp_path, [",".join(names)] + lines[1:51], prefix=b"\xef\xbb\xbf")
    pd.testing.assert_frame_equal(read_source_csv(path, TELCO), frame.iloc[:50].reset_index(drop=True))
    assert normalise_header("\ufeff  MonthlyCharges ") == normalise_header("monthlycharges") == "monthlycharges"


def test_headers_equal_after_normalisation_are_ambiguous(tmp_path, lines):
    header = lines[0] + ",CONTRACT"
    rows = [x + ",x" for x in lines[1:5]]
    with pytest.raises(IngestError, match=r"columns 'Contract' and 'CONTRACT' are the same header after normalisation"):
        read_source_csv(write(tmp_path, [header] + rows), TELCO)


def test_extra_columns_are_ignored_but_checked(tmp_path, lines, frame):
    path = write(tmp_path, [lines[0] + ",note"] + [x + ",hello" for x in lines[1:11]])
    pd.testing.assert_frame_equal(read_source_csv(path, TELCO), frame.iloc[:10].reset_index(drop=True))
    assert check_source_csv(path, TELCO) == [f"{path}: unexpected columns ['note'] (ingestion ignores them)"]


def test_non_utf8_bytes_raise(tmp_path, lines):
    path = tmp_path / "latin1.csv"
    text = "\n".join(lines[:6]) + "\n"
    # 'Électronic' in Latin-1: 0xC9 is not valid UTF-8 on its own.
    path.write_bytes(text.replace("Electronic check", "\u00c9lectronic check").encode("latin-1"))
    with pytest.raises(IngestError, match="not UTF-8") as info:
        read_source_csv(path, TELCO)
    assert str(path) in str(info.value)


def test_duplicate_customer_ids_raise(tmp_path, lines):
    dup = lines[:11] + [lines[5]]
    with pytest.raises(IngestError) as info:
        read_source_csv(write(tmp_path, dup), TELCO)
    msg = str(info.value)
    assert "duplicate customer_id" in msg
    assert repr(get_field(lines[5], "customerID", lines[0])) in msg
    assert "2 rows share ids" in msg


def test_maybe_in_yes_no_column_raises(tmp_path, lines):
    header = lines[0]
    bad = list(lines[:11])
    bad[7] = set_field(bad[7], "Partner", "Maybe", header)
    with pytest.raises(IngestError) as info:
        read_source_csv(write(tmp_path, bad), TELCO)
    assert str(info.value) == "Partner: expected 'Yes' or 'No', got 'Maybe' at data row 7 (1 bad value(s) in all)"


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("tenure", "twelve", "an integer >= 0"),
        ("tenure", "1.5", "an integer >= 0"),
        ("tenure", "-1", "an integer >= 0"),
        ("SeniorCitizen", "2", "0 or 1"),
        ("MonthlyCharges", "abc", "a finite number >= 0"),
        ("MonthlyCharges", "-5", "a finite number >= 0"),
        ("Churn", "Unknown", "'Yes' or 'No'"),
        ("gender", " ", "a non-empty string"),
    ],
)
def test_unparsable_values_name_column_row_and_value(tmp_path, lines, column, value, expected):
    bad = list(lines[:11])
    bad[4] = set_field(bad[4], column, value, lines[0])
    with pytest.raises(IngestError) as info:
        read_source_csv(write(tmp_path, bad), TELCO)
    assert str(info.value) == f"{column}: expected {expected}, got {value!r} at data row 4 (1 bad value(s) in all)"


def test_yes_no_is_case_and_space_insensitive(tmp_path, lines, frame):
    header = lines[0]
    mixed = list(lines[:6])
    mixed[1] = set_field(mixed[1], "Partner", " YES ", header)
    mixed[2] = set_field(mixed[2], "Partner", "no", header)
    got = read_source_csv(write(tmp_path, mixed), TELCO)
    assert got["partner"].tolist()[:2] == [True, False]


def test_to_arrow_keeps_explicit_schema(frame):
    table = to_arrow(frame, TELCO)
    assert table.schema.equals(arrow_schema(TELCO))
    assert table.num_rows == 7043
    assert table.column("tenure_months").type == pa.int64()
    assert table.column("customer_id").type == pa.string()
    assert table.column("churned").type == pa.bool_()
    assert table.column("total_charges_usd").to_numpy().sum() == pytest.approx(frame["total_charges_usd"].sum())
    back = table.to_pandas()
    assert back["customer_id"].tolist() == frame["customer_id"].tolist()
    assert back["tenure_months"].tolist() == frame["tenure_months"].tolist()


def test_to_arrow_rejects_frame_with_wrong_type(frame):
    broken = frame.iloc[:5].copy()
    broken["tenure_months"] = ["a", "b", "c", "d", "e"]
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        to_arrow(broken, TELCO)


# ---------------------------------------------------------------- profile-driven
def test_telco_typed_table_is_unchanged_by_profile_files(frame):
    """The typed table of the shipped file, value for value and type for type, as before."""
    import hashlib

    table = to_arrow(frame, TELCO)
    digest = hashlib.sha256()
    for name in table.column_names:
        digest.update(name.encode())
        digest.update(str(table.schema.field(name).type).encode())
        digest.update(repr(table.column(name).to_pylist()).encode())
    assert digest.hexdigest() == TELCO_TABLE_DIGEST


def test_check_lists_every_mismatch(tmp_path, lines):
    header = lines[0].replace("Contract", "Kontrakt")
    bad = [header] + lines[1:11]
    bad[2] = set_field(bad[2], "tenure", "x", header)
    bad[4] = set_field(bad[4], "Partner", "Maybe", header)
    path = write(tmp_path, bad)
    found = check_source_csv(path, TELCO)
    assert found[0].endswith("missing columns ['Contract']; unexpected columns ['Kontrakt']")
    assert found[1:] == [
        "Partner: expected 'Yes' or 'No', got 'Maybe' at data row 4 (1 bad value(s) in all)",
        "tenure: expected an integer >= 0, got 'x' at data row 2 (1 bad value(s) in all)",
    ]
    assert check_source_csv(write(tmp_path, lines[:21], "ok.csv"), TELCO) == []


def tiny_profile(**changes):
    data = {
        "name": "tiny",
        "text": {"casefold": True},
        "id": {"column": None},
        "label": {"field": "left"},
        "fields": [
            {"column": "Plan Type", "name": "plan_type", "type": "category"},
            {"column": "calls", "name": "calls", "type": "integer"},
            {"column": "Spend", "name": "spend", "type": "number", "non_negative": False},
            {"column": "Left", "name": "left", "type": "boolean", "encoding": "one_zero"},
        ],
        "features": {"numeric": ["calls", "spend"], "categorical": ["plan_type"]},
    }
    for key, value in changes.items():
        if key == "left":
            data["fields"][3] = {"column": "Left", "name": "left", **value}
        elif key == "plan":
            data["fields"][0].update(value)
        else:
            data[key] = value
    return parse_profile(data)


def test_one_zero_label_with_floats_derived_ids_and_casefold(tmp_path):
    text = [
        "plan type,CALLS,spend,left",
        " Gold ,3,-1.5,1.0",
        "gold,3,-1.5,0",
        "GOLD,3,-1.5,1",
        "Silver,0,,0.0",
        "Ｓｉｌｖｅｒ,0,,0",
    ]
    profile = tiny_profile()
    frame = read_source_csv(write(tmp_path, text), profile)
    assert list(frame.columns) == ["customer_id", "plan_type", "calls", "spend", "left"]
    assert frame["left"].tolist() == [True, False, True, False, False]
    assert frame["plan_type"].tolist() == ["gold", "gold", "gold", "silver", "silver"]
    assert np.isnan(frame["spend"].to_numpy()[3:]).all()
    ids = frame["customer_id"].tolist()
    # Same values (after normalisation) but the label: same id, made unique by occurrence.
    assert ids[1] == ids[0] + "-2" and ids[2] == ids[0] + "-3" and ids[4] == ids[3] + "-2"
    assert len(ids[0]) == 16 and int(ids[0], 16) >= 0
    again = read_source_csv(write(tmp_path, text, "again.csv"), profile)
    assert again["customer_id"].tolist() == ids
    assert to_arrow(frame, profile).schema == arrow_schema(profile)
    assert arrow_schema(profile).field("left").type == pa.bool_()


def test_derived_id_is_the_documented_hash():
    import hashlib

    frame = pd.DataFrame(
        {
            "plan_type": pd.array(["gold"], dtype="str"),
            "calls": np.array([3]),
            "spend": np.array([-1.5]),
            "left": [True],
        }
    )
    expected = hashlib.sha256(b"gold\x1f3\x1f-1.5").hexdigest()[:16]
    assert derive_ids(frame, tiny_profile()).tolist() == [expected]


@pytest.mark.parametrize(
    ("left", "cells", "expected", "error"),
    [
        ({"type": "boolean", "encoding": "true_false"}, ["TRUE", "false"], [True, False], "true or false"),
        ({"type": "yes_no"}, ["yes", "No"], [True, False], "'Yes' or 'No'"),
        ({"type": "boolean"}, ["1", "0.0"], [True, False], "0 or 1"),
    ],
)
def test_label_readings(tmp_path, left, cells, expected, error):
    profile = tiny_profile(left=left)
    rows = ["plan type,calls,spend,left"] + [f"a,{i},1,{c}" for i, c in enumerate(cells)]
    assert read_source_csv(write(tmp_path, rows), profile)["left"].tolist() == expected
    with pytest.raises(IngestError, match=f"Left: expected {error}, got 'maybe' at data row 2"):
        read_source_csv(write(tmp_path, rows[:2] + ["a,9,1,maybe"], "bad.csv"), profile)


def test_positive_values_label(tmp_path):
    profile = tiny_profile(left={"type": "category"}, label={"field": "left", "positive_values": ["Fired", "quit "]})
    rows = ["plan type,calls,spend,left", "a,1,1,FIRED", "a,2,1,ok", "a,3,1,Quit", "a,4,1,promoted"]
    assert read_source_csv(write(tmp_path, rows), profile)["left"].tolist() == [True, False, True, False]
    with pytest.raises(IngestError, match="Left: expected a non-empty label, got ' ' at data row 1"):
        read_source_csv(write(tmp_path, rows[:1] + ["a,1,1, "], "blank.csv"), profile)


def test_missing_value_rules(tmp_path):
    rows = ["plan type,calls,spend,left", ",,2,1", "b,4,,0"]
    with pytest.raises(IngestError, match="Plan Type: expected a non-empty string, got '' at data row 1"):
        read_source_csv(write(tmp_path, rows), tiny_profile())
    profile = tiny_profile(plan={"missing": {"blank": "fill", "value": "unknown"}})
    with pytest.raises(IngestError, match="calls: expected an integer >= 0, got '' at data row 1"):
        read_source_csv(write(tmp_path, rows, "b.csv"), profile)
    data = profile.spec.model_dump()
    data["fields"][1]["missing"] = {"blank": "fill", "value": 0, "only_when": {"field": "left", "equals": True}}
    filled = read_source_csv(write(tmp_path, rows, "c.csv"), parse_profile(data))
    assert filled["plan_type"].tolist() == ["unknown", "b"]
    assert filled["calls"].tolist() == [0, 4] and filled["calls"].dtype == np.int64
    data["fields"][1]["missing"]["only_when"]["equals"] = False
    with pytest.raises(IngestError, match=r"calls: expected an integer \(blank is only valid for Left False\)"):
        read_source_csv(write(tmp_path, rows, "d.csv"), parse_profile(data))


def test_duplicate_ids_from_an_id_column_still_raise(tmp_path):
    profile = tiny_profile(id={"column": "calls"}, features={"numeric": ["spend"], "categorical": ["plan_type"]})
    rows = ["plan type,calls,spend,left", "a,1,1,1", "b,1,2,0"]
    with pytest.raises(IngestError, match="duplicate calls 1"):
        read_source_csv(write(tmp_path, rows), profile)
