"""The one text normaliser: the stream's and the API's (schemas.normalise) equals batch ingest's (Arrow)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from batch.ingest import normalise_text as arrow_normalise
from batch.ingest import normalise_value
from schemas.normalise import WHITE_SPACE, TextNormaliser, normalise_text, normalise_texts
from schemas.profile_model import TextRules
from schemas.profiles import TELCO, parse_profile

TRICKY = [
    "Month-to-month",
    "  Month-to-month ",
    "MONTH-TO-MONTH",
    "\u00a0Fiber optic\u3000",
    "ＦＩＢＥＲ ｏｐｔｉｃ",  # full-width: NFKC makes it ASCII
    "Straße",  # casefold: strasse
    "e\u0301lan",  # combining accent: NFC/NFKC compose it
    "\x1cunit-separated\x1f",  # information separators: white space to Arrow and Python alike
    "\u2003em space\u2029",
    "tab\tinside",
    "",
    "   ",
    "\x85",
]


@pytest.mark.parametrize("casefold", [False, True])
@pytest.mark.parametrize("form", ["NFKC", "NFC", "none"])
@pytest.mark.parametrize("kind", ["category", "identifier"])
def test_scalar_normaliser_equals_batch_ingests_arrow_one(casefold, form, kind):
    data = TELCO.spec.model_dump(mode="json")
    data["text"] = {"unicode_form": form, "trim": True, "casefold": casefold}
    profile = parse_profile(data)
    field = next(f for f in profile.spec.fields if f.type == kind)
    arrow = arrow_normalise(pa.chunked_array([pa.array(TRICKY)]), profile, field).to_pylist()
    ours = [normalise_text(v, profile.spec.text, kind) for v in TRICKY]
    assert ours == arrow
    assert ours == [normalise_value(v, profile, field) for v in TRICKY]  # the same rule on one value
    columns = TextNormaliser(profile.spec.text, {"f": kind}).values("f", TRICKY + [None])
    assert columns == ours + [None]


def test_white_space_is_what_arrow_trims():
    arrow = pa.compute.utf8_trim_whitespace(pa.array([f"x{c}" for c in WHITE_SPACE] + ["x\u200b"])).to_pylist()
    assert arrow == ["x"] * len(WHITE_SPACE) + ["x\u200b"]  # a zero-width space is not white space
    assert WHITE_SPACE == "".join(chr(i) for i in range(0x3100) if chr(i).isspace())
    assert normalise_text("\u00a0a\u3000", TextRules()) == "a"


@pytest.mark.parametrize("form", ["NFKC", "none"])
def test_column_normaliser_equals_the_scalar_one_with_or_without_white_space(form):
    rules = TextRules(unicode_form=form, trim=True, casefold=False)
    clean = ["7590-VHVEG", "5575-GNVDE", "x"]
    for values in ([*clean], [*clean, "3668-QPYBK "], ["\x1c3668"], [*clean, "é "], TRICKY, []):
        for kind in ("identifier", "category"):
            assert normalise_texts(values, rules, kind) == [normalise_text(v, rules, kind) for v in values]
