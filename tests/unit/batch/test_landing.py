"""The landing zone's per-file screening and the cycle's input checks, without servers."""

from __future__ import annotations

import pandas as pd
import pytest

from batch.cycle import InsufficientRowsError, check_min_rows_per_class, input_sha256
from batch.ingest import read_source_csv
from batch.landing import EMPTY_INPUT, screen_bytes
from schemas.profiles import TELCO


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xef\xbb\xbf", b"  \n\r\n", b"customerID,gender\n", b"\xef\xbb\xbfcustomerID,gender\r\n\r\n"],
    ids=["no bytes", "bom only", "blank lines", "header only", "bom header crlf"],
)
def test_empty_and_header_only_files_are_empty_input(raw):
    assert screen_bytes(raw) == (EMPTY_INPUT, None)


def test_undecodable_bytes_give_the_decode_error_and_its_row():
    raw = b"customerID,gender\n1,Male\n2,Female\n3,F\xe9male\n"
    assert screen_bytes(raw) == ("not UTF-8 text (invalid continuation byte at byte 37)", 3)
    assert screen_bytes(b"custom\xe9rID\n1\n")[1] == 0  # in the header


def test_a_file_with_data_passes_the_screen(telco_csv):
    assert screen_bytes(telco_csv.read_bytes()) is None


def test_rows_per_class_below_the_minimum_stop_the_cycle(telco_csv):
    frame = read_source_csv(telco_csv, TELCO)
    assert check_min_rows_per_class(frame, "churned", 100) == {"churned": 1869, "retained": 5174}
    few = pd.concat([frame[frame["churned"]].head(99), frame[~frame["churned"]].head(500)], ignore_index=True)
    with pytest.raises(InsufficientRowsError, match=r"churned=99, retained=500; CHURN_BATCH_MIN_ROWS_PER_CLASS=100"):
        check_min_rows_per_class(few, "churned", 100)
    assert check_min_rows_per_class(few, "churned", 0)["churned"] == 99  # 0 disables


def test_input_hash_follows_content_not_bytes(telco_csv, tmp_path):
    raw = telco_csv.read_bytes()
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"))
    whole = read_source_csv(telco_csv, TELCO)
    assert input_sha256(whole) == input_sha256(read_source_csv(crlf, TELCO))
    halves = pd.concat([whole.iloc[:3000], whole.iloc[3000:]], ignore_index=True)
    assert input_sha256(halves) == input_sha256(whole)
    changed = whole.copy()
    changed.loc[5, "monthly_charges_usd"] += 0.01
    assert input_sha256(changed) != input_sha256(whole)
    assert len(input_sha256(whole)) == 64
