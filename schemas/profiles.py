"""Dataset profiles: source columns and types, id, targets and features per task."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetProfile:
    """How one source data set maps onto the event contract and the models.

    Attributes
    ----------
    name : str
    source_columns : dict of str to str
        Source (CSV) column name -> event field name.
    source_types : dict of str to str
        Event field -> one of ``"str"``, ``"int"``, ``"float"``, ``"bool"``,
        ``"yes_no"`` (the strings ``Yes``/``No``), ``"yes_no_label"`` (target).
    id_column : str
        Event field identifying the customer.
    classification_target : str
        Event field of the churn label (bool).
    regression_target : str
        Event field of the customer value (float, USD).
    numeric_features, categorical_features : tuple of str
        Classifier inputs (booleans count as numeric 0/1).
    regression_excluded : tuple of str
        Features never given to the regressor (its own target, and leakage).
    """

    name: str
    source_columns: dict[str, str]
    source_types: dict[str, str]
    id_column: str
    classification_target: str
    regression_target: str
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    regression_excluded: tuple[str, ...] = field(default_factory=tuple)

    @property
    def features(self) -> tuple[str, ...]:
        """Every classifier input, numerics first."""
        return self.numeric_features + self.categorical_features

    def regression_features(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(numeric, categorical) inputs of the regressor."""
        drop = set(self.regression_excluded) | {self.regression_target}
        return (
            tuple(c for c in self.numeric_features if c not in drop),
            tuple(c for c in self.categorical_features if c not in drop),
        )


_TELCO_COLUMNS = {
    "customerID": "customer_id",
    "gender": "gender",
    "SeniorCitizen": "senior_citizen",
    "Partner": "partner",
    "Dependents": "dependents",
    "tenure": "tenure_months",
    "PhoneService": "phone_service",
    "MultipleLines": "multiple_lines",
    "InternetService": "internet_service",
    "OnlineSecurity": "online_security",
    "OnlineBackup": "online_backup",
    "DeviceProtection": "device_protection",
    "TechSupport": "tech_support",
    "StreamingTV": "streaming_tv",
    "StreamingMovies": "streaming_movies",
    "Contract": "contract",
    "PaperlessBilling": "paperless_billing",
    "PaymentMethod": "payment_method",
    "MonthlyCharges": "monthly_charges_usd",
    "TotalCharges": "total_charges_usd",
    "Churn": "churned",
}

#: The IBM Telco customer churn data set (7,043 customers), shipped in ``data/``.
#: ``TotalCharges`` is blank for the 11 customers with tenure 0: nothing billed
#: yet, so ingestion reads those blanks as 0.0 (and rejects a blank with tenure > 0).
TELCO = DatasetProfile(
    name="telco",
    source_columns=_TELCO_COLUMNS,
    source_types={
        "customer_id": "str",
        "gender": "str",
        "senior_citizen": "bool",
        "partner": "yes_no",
        "dependents": "yes_no",
        "tenure_months": "int",
        "phone_service": "yes_no",
        "multiple_lines": "str",
        "internet_service": "str",
        "online_security": "str",
        "online_backup": "str",
        "device_protection": "str",
        "tech_support": "str",
        "streaming_tv": "str",
        "streaming_movies": "str",
        "contract": "str",
        "paperless_billing": "yes_no",
        "payment_method": "str",
        "monthly_charges_usd": "float",
        "total_charges_usd": "float",
        "churned": "yes_no_label",
    },
    id_column="customer_id",
    classification_target="churned",
    regression_target="total_charges_usd",
    numeric_features=(
        "senior_citizen",
        "partner",
        "dependents",
        "tenure_months",
        "phone_service",
        "paperless_billing",
        "monthly_charges_usd",
        "total_charges_usd",
    ),
    categorical_features=(
        "gender",
        "multiple_lines",
        "internet_service",
        "online_security",
        "online_backup",
        "device_protection",
        "tech_support",
        "streaming_tv",
        "streaming_movies",
        "contract",
        "payment_method",
    ),
)

PROFILES = {TELCO.name: TELCO}


def get_profile(name: str) -> DatasetProfile:
    """Profile by name.

    Raises
    ------
    KeyError
        With the known names, if ``name`` is unknown.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(PROFILES)}") from None
