"""Dataset profiles as files: loading, validation messages, JSON Schema, derived features, names."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from schemas.expressions import ExpressionError, evaluate, expression_names, parse_expression
from schemas.profile_model import profile_json_schema, snake_case
from schemas.profiles import (
    RETAIL,
    SHIPPED_DIR,
    TELCO,
    DatasetProfile,
    ProfileError,
    get_profile,
    load_profile_file,
    parse_profile,
    shipped_profile_names,
)

MINIMAL = {
    "name": "tiny",
    "label": {"field": "left"},
    "fields": [
        {"column": "Plan", "name": "plan", "type": "category"},
        {"column": "Calls", "name": "calls", "type": "integer"},
        {"column": "Left", "name": "left", "type": "boolean"},
    ],
    "features": {"numeric": ["calls"], "categorical": ["plan"]},
}


def with_changes(**changes) -> dict:
    data = copy.deepcopy(MINIMAL)
    data.update(changes)
    return data


def problems(data: dict) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(data, "p.yaml")
    return str(info.value)


# ------------------------------------------------------------------- shipped
def test_shipped_profiles_are_files_and_load_by_name_or_path():
    assert shipped_profile_names() == ["retail", "telco"]
    assert get_profile("telco") is TELCO
    by_path = get_profile(SHIPPED_DIR / "telco.yaml")
    assert isinstance(by_path, DatasetProfile) and by_path.digest == TELCO.digest
    assert get_profile(str(SHIPPED_DIR / "retail.yaml")).features == RETAIL.features


def test_telco_attribute_api_is_the_code_defined_profiles():
    assert TELCO.id_column == "customer_id" and not TELCO.derives_id
    assert TELCO.classification_target == "churned" and TELCO.regression_target == "total_charges_usd"
    assert list(TELCO.source_columns)[:3] == ["customerID", "gender", "SeniorCitizen"]
    assert TELCO.source_types["churned"] == "yes_no_label" and TELCO.source_types["tenure_months"] == "int"
    assert TELCO.numeric_features == (
        "senior_citizen",
        "partner",
        "dependents",
        "tenure_months",
        "phone_service",
        "paperless_billing",
        "monthly_charges_usd",
        "total_charges_usd",
    )
    assert len(TELCO.categorical_features) == 11 and TELCO.features[-1] == "payment_method"
    assert TELCO.regression_features()[0] == TELCO.numeric_features[:-1]
    rule = TELCO.fields_by_name["total_charges_usd"].missing
    assert rule is not None and rule.blank == "fill" and rule.value == 0.0
    assert rule.only_when is not None and (rule.only_when.field, rule.only_when.equals) == ("tenure_months", 0)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown dataset 'foo'; known: \['retail', 'telco'\]"):
        get_profile("foo")
    with pytest.raises(ProfileError, match="no such profile file"):
        get_profile("missing.yaml")


def test_every_shipped_file_validates_against_the_exported_json_schema():
    schema = profile_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in SHIPPED_DIR.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    assert "fields" in schema["properties"] and schema["title"] == "churn-stream dataset profile"


def test_yaml_round_trip_and_digest(tmp_path):
    path = tmp_path / "telco_copy.yaml"
    path.write_text(TELCO.to_yaml())
    again = load_profile_file(path)
    assert again.digest == TELCO.digest and again.features == TELCO.features
    changed = parse_profile(with_changes(description="other"))
    assert changed.digest != parse_profile(MINIMAL).digest


def test_yes_and_no_stay_text_in_profile_files(tmp_path):
    """YAML 1.1 would read a bare Yes, No or on as booleans; profile files read them as text."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: tiny\ndescription: No\nlabel: {field: left, positive_values: [Yes, on]}\n"
        "fields:\n"
        "- {column: Plan, name: plan, type: category}\n"
        "- {column: Calls, name: calls, type: integer}\n"
        "- {column: Left, name: left, type: category}\n"
        "features: {numeric: [calls], categorical: [plan]}\n"
    )
    profile = load_profile_file(path)
    assert profile.positive_values == ("Yes", "on")
    assert profile.spec.description == "No"


# ---------------------------------------------------------------- validation
def test_every_problem_is_listed_once_per_line():
    data = with_changes(label={"field": "plan"})
    data["fields"][1]["type"] = "int"
    data["fields"].append({"column": "Extra", "name": "extra", "type": "number"})
    msg = problems(data)
    assert msg.startswith("p.yaml: ")
    assert "fields.1.type: Input should be 'integer', 'number'" in msg and "(got 'int')" in msg
    data["fields"][1]["type"] = "integer"
    msg = problems(data)
    assert "label 'plan' is a category: list its positive_values" in msg
    assert "field 'extra' has no role" in msg
    assert "'plan' is the label, not a feature" in msg
    assert len(msg.splitlines()) == 4  # every problem on its own line


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"value_target": "plan"}, "value_target 'plan' must be an integer or number field"),
        ({"features": {"numeric": ["calls", "plan"], "categorical": []}}, "features.numeric: 'plan' is category"),
        ({"features": {"numeric": ["calls"], "categorical": ["plan", "calls"]}}, "'calls' is both numeric and"),
        ({"features": {"numeric": ["calls", "nope"], "categorical": ["plan"]}}, "unknown field 'nope'"),
        ({"id": {"column": "Nope"}}, "id.column 'Nope' is not a field's column"),
        ({"id": {"field": "plan"}}, "derived id field 'plan' clashes with a field"),
        ({"name": "Has Space"}, "name: String should match pattern"),
        (
            {"derived": [{"name": "x", "expression": "__import__('os').system('true')"}]},
            "only max(a, b) and min(a, b) may be called",
        ),
        ({"derived": [{"name": "x", "expression": "calls.real"}]}, "Attribute is not allowed"),
        ({"derived": [{"name": "x", "expression": "plan * 2"}]}, "category 'plan' has no levels"),
        ({"derived": [{"name": "x", "expression": "2 * 3"}]}, "the expression reads no field"),
    ],
)
def test_cross_field_rules(change, expected):
    assert expected in problems(with_changes(**change))


def test_field_rules():
    data = with_changes()
    data["fields"][1].update(name="charges", type="number", unit="USD")
    data["features"]["numeric"] = ["charges"]
    assert "a field in USD is named with the suffix '_usd'" in problems(data)
    data = with_changes()
    data["fields"][0]["missing"] = {"blank": "keep"}
    assert "blank: keep (NaN) applies to number fields only" in problems(data)
    data["fields"][0]["missing"] = {"blank": "fill"}
    assert "'value' is required with blank: fill" in problems(data)
    data = with_changes()
    data["fields"][1]["encoding"] = "true_false"
    assert "'encoding' applies to boolean fields only" in problems(data)


def test_not_yaml_and_not_a_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"bad.yaml: not YAML"):
        load_profile_file(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ProfileError, match="expected a mapping at the top level, got list"):
        load_profile_file(bad)


def test_json_profile_files_load(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(MINIMAL))
    assert get_profile(path).features == ("calls", "plan")


# ----------------------------------------------------------- derived features
def test_retail_derived_features_are_data():
    assert RETAIL.derived_features == ("line_value_usd", "engagement_score", "recency_ratio", "online_share")
    assert set(RETAIL.derived_features) <= set(RETAIL.numeric_features)
    assert RETAIL.fields_by_name["app_usage"].levels == {"Low": 0.0, "Medium": 1.0, "High": 2.0}


def test_expression_grammar():
    assert expression_names("max(a * 2, b) / -c") == {"a", "b", "c"}
    cols = {"a": np.array([1.0, 0.0]), "b": np.array([5, 0]), "c": np.array([True, False])}
    np.testing.assert_allclose(evaluate("max(a * 2, b) / -c", cols, {}), [-5.0, np.nan])
    np.testing.assert_allclose(
        evaluate("lvl + 1", {"lvl": np.array(["Hi", "x"], dtype=object)}, {"lvl": {"Hi": 2.0}}), [3, np.nan]
    )
    for bad in ("a if b else c", "a < b", "[a]", "a ** 2", "open(a)", "a[0]", "lambda: 1", "'text'"):
        with pytest.raises(ExpressionError):
            parse_expression(bad)


# ---------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("customerID", "customer_id"),
        ("MonthlyCharges", "monthly_charges"),
        ("tenure", "tenure"),
        ("Total Day Minutes", "total_day_minutes"),
        ("  number_vmail_messages ", "number_vmail_messages"),
        ("HTTPStatusCode", "http_status_code"),
        ("YearsWithCurrManager", "years_with_curr_manager"),
        ("Städte-Anzahl", "stadte_anzahl"),
        ("\ufeff2nd plan", "f_2nd_plan"),
        ("%", ""),
    ],
)
def test_snake_case(header, name):
    assert snake_case(header) == name


def test_profile_file_is_package_data():
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert 'schemas = ["shipped_profiles/*.yaml"]' in pyproject
