"""Dataset profiles: source columns and types, id, targets and features per task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
        ``"yes_no"`` (the strings ``Yes``/``No``), ``"yes_no_label"`` (target),
        ``"date"`` (an ISO ``YYYY-MM-DD`` date, kept as that text).
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


# --------------------------------------------------------------------- retail
#: Source (seed) column -> event field, in the seed file's column order (78 columns).
#: Money fields gain ``_usd``, distances ``_km``, weights ``_kg``, durations ``_days``;
#: discounts are fractions of the list price (``discount_rate``). Customer aggregates
#: (``total_*``, ``avg_*``, ``online/in_store_purchases``, ``customer_support_calls``)
#: cover the 12 months before the as-of date (the whole membership if shorter);
#: ``website_visits`` the last 30 days. The transaction columns describe the
#: customer's most recent purchase, so ``transaction_date == last_purchase_date``.
_RETAIL_COLUMNS = {
    "customer_id": "customer_id",
    "age": "age",
    "gender": "gender",
    "income_bracket": "income_bracket",
    "loyalty_program": "loyalty_program",
    "membership_years": "membership_years",
    "churned": "churned",
    "marital_status": "marital_status",
    "number_of_children": "number_of_children",
    "education_level": "education_level",
    "occupation": "occupation",
    "transaction_id": "transaction_id",
    "transaction_date": "transaction_date",
    "product_id": "product_id",
    "product_category": "product_category",
    "quantity": "quantity",
    "unit_price": "unit_price_usd",
    "discount_applied": "discount_rate",
    "payment_method": "payment_method",
    "store_location": "store_location",
    "transaction_hour": "transaction_hour",
    "day_of_week": "day_of_week",
    "week_of_year": "week_of_year",
    "month_of_year": "month_of_year",
    "avg_purchase_value": "avg_purchase_value_usd",
    "purchase_frequency": "purchase_frequency",
    "last_purchase_date": "last_purchase_date",
    "avg_discount_used": "avg_discount_rate",
    "preferred_store": "preferred_store",
    "online_purchases": "online_purchases",
    "in_store_purchases": "in_store_purchases",
    "avg_items_per_transaction": "avg_items_per_transaction",
    "avg_transaction_value": "avg_transaction_value_usd",
    "total_returned_items": "total_returned_items",
    "total_returned_value": "total_returned_value_usd",
    "total_sales": "total_sales_usd",
    "total_transactions": "total_transactions",
    "total_items_purchased": "total_items_purchased",
    "total_discounts_received": "total_discounts_received_usd",
    "avg_spent_per_category": "avg_spent_per_category_usd",
    "max_single_purchase_value": "max_single_purchase_value_usd",
    "min_single_purchase_value": "min_single_purchase_value_usd",
    "product_name": "product_name",
    "product_brand": "product_brand",
    "product_rating": "product_rating",
    "product_review_count": "product_review_count",
    "product_stock": "product_stock",
    "product_return_rate": "product_return_rate",
    "product_size": "product_size",
    "product_weight": "product_weight_kg",
    "product_color": "product_color",
    "product_material": "product_material",
    "product_manufacture_date": "product_manufacture_date",
    "product_expiry_date": "product_expiry_date",
    "product_shelf_life": "product_shelf_life_days",
    "promotion_id": "promotion_id",
    "promotion_type": "promotion_type",
    "promotion_start_date": "promotion_start_date",
    "promotion_end_date": "promotion_end_date",
    "promotion_effectiveness": "promotion_effectiveness",
    "promotion_channel": "promotion_channel",
    "promotion_target_audience": "promotion_target_audience",
    "customer_zip_code": "customer_zip_code",
    "customer_city": "customer_city",
    "customer_state": "customer_state",
    "store_zip_code": "store_zip_code",
    "store_city": "store_city",
    "store_state": "store_state",
    "distance_to_store": "distance_to_store_km",
    "holiday_season": "holiday_season",
    "season": "season",
    "weekend": "weekend",
    "customer_support_calls": "customer_support_calls",
    "email_subscriptions": "email_subscriptions",
    "app_usage": "app_usage",
    "website_visits": "website_visits",
    "social_media_engagement": "social_media_engagement",
    "days_since_last_purchase": "days_since_last_purchase",
}

_RETAIL_INT = (
    "age",
    "number_of_children",
    "quantity",
    "transaction_hour",
    "week_of_year",
    "month_of_year",
    "online_purchases",
    "in_store_purchases",
    "total_returned_items",
    "total_transactions",
    "total_items_purchased",
    "product_review_count",
    "product_stock",
    "product_shelf_life_days",
    "customer_support_calls",
    "website_visits",
    "days_since_last_purchase",
)
_RETAIL_FLOAT = (
    "membership_years",
    "unit_price_usd",
    "discount_rate",
    "avg_purchase_value_usd",
    "avg_discount_rate",
    "avg_items_per_transaction",
    "avg_transaction_value_usd",
    "total_returned_value_usd",
    "total_sales_usd",
    "total_discounts_received_usd",
    "avg_spent_per_category_usd",
    "max_single_purchase_value_usd",
    "min_single_purchase_value_usd",
    "product_rating",
    "product_return_rate",
    "product_weight_kg",
    "distance_to_store_km",
)
_RETAIL_YES_NO = ("loyalty_program", "holiday_season", "weekend", "email_subscriptions")
_RETAIL_DATE = (
    "transaction_date",
    "last_purchase_date",
    "product_manufacture_date",
    "product_expiry_date",
    "promotion_start_date",
    "promotion_end_date",
)


def _retail_types() -> dict[str, str]:
    kinds = {f: "str" for f in _RETAIL_COLUMNS.values()}
    kinds.update({f: "int" for f in _RETAIL_INT})
    kinds.update({f: "float" for f in _RETAIL_FLOAT})
    kinds.update({f: "yes_no" for f in _RETAIL_YES_NO})
    kinds.update({f: "date" for f in _RETAIL_DATE})
    kinds["churned"] = "yes_no_label"
    return kinds


#: Fields computed from source fields before featurisation
#: (:func:`retail_engineered_features`); not in the source file.
RETAIL_ENGINEERED = ("line_value_usd", "engagement_score", "recency_ratio", "online_share")

#: Synthetic retail customers (``churn data generate retail``, ``batch/retail.py``):
#: one row per customer with their most recent transaction, 12-month aggregates,
#: the product and promotion of that transaction, and two targets: ``churned`` and
#: ``total_sales_usd`` (net sales of the aggregate window).
#:
#: Classifier inputs leave out ids, dates, both targets, high-cardinality place and
#: product descriptors (city, zip, store, product name/brand/colour/...), and the
#: calendar fields of the last transaction (day, week, month, season, holiday,
#: weekend, hour): its date is the as-of date minus ``days_since_last_purchase``, so
#: they only re-encode recency. Nothing left is measured after the churn outcome.
#:
#: The regressor also drops every figure read off the same invoices as
#: ``total_sales_usd``: ``avg_transaction_value_usd`` (= total sales / transactions),
#: ``avg_purchase_value_usd`` (basket value; x total_transactions ~ total sales),
#: ``avg_spent_per_category_usd``, ``total_discounts_received_usd``,
#: ``total_returned_value_usd``, ``max/min_single_purchase_value_usd``. It keeps the
#: counts (transactions, items), the last basket and who the customer is, so it
#: predicts value from behaviour instead of re-adding the invoice.
RETAIL = DatasetProfile(
    name="retail",
    source_columns=_RETAIL_COLUMNS,
    source_types=_retail_types(),
    id_column="customer_id",
    classification_target="churned",
    regression_target="total_sales_usd",
    numeric_features=(
        "age",
        "number_of_children",
        "membership_years",
        "loyalty_program",
        "days_since_last_purchase",
        "total_transactions",
        "total_items_purchased",
        "avg_items_per_transaction",
        "avg_purchase_value_usd",
        "avg_transaction_value_usd",
        "avg_spent_per_category_usd",
        "max_single_purchase_value_usd",
        "min_single_purchase_value_usd",
        "avg_discount_rate",
        "total_discounts_received_usd",
        "total_returned_items",
        "total_returned_value_usd",
        "online_purchases",
        "in_store_purchases",
        "quantity",
        "unit_price_usd",
        "discount_rate",
        "distance_to_store_km",
        "customer_support_calls",
        "website_visits",
        "email_subscriptions",
        "line_value_usd",
        "engagement_score",
        "recency_ratio",
        "online_share",
    ),
    categorical_features=(
        "gender",
        "income_bracket",
        "marital_status",
        "education_level",
        "occupation",
        "customer_state",
        "store_location",
        "payment_method",
        "purchase_frequency",
        "app_usage",
        "social_media_engagement",
        "product_category",
        "promotion_type",
    ),
    regression_excluded=(
        "avg_transaction_value_usd",
        "avg_purchase_value_usd",
        "avg_spent_per_category_usd",
        "total_discounts_received_usd",
        "total_returned_value_usd",
        "max_single_purchase_value_usd",
        "min_single_purchase_value_usd",
    ),
)

#: Ordinal levels of the seed's Low/Medium/High engagement columns.
_LEVELS = {"Low": 0.0, "Medium": 1.0, "High": 2.0}


def retail_engineered_features(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The engineered retail inputs, from typed event fields (a frame or a dict of arrays).

    Pure and row-wise, so the batch job, the worker and the API compute them alike:

    - ``line_value_usd = quantity * unit_price_usd`` (the last basket line, before discount);
    - ``engagement_score = (app + social + 2 * email) / 6`` in [0, 1], where ``app_usage``
      and ``social_media_engagement`` map Low/Medium/High to 0/1/2 and
      ``email_subscriptions`` is 0/1 (an unknown level gives NaN);
    - ``recency_ratio = days_since_last_purchase / (membership_years * 365.25)``, the
      share of the membership spent since the last purchase (membership floored at one
      day);
    - ``online_share = online_purchases / (online_purchases + in_store_purchases)``
      (NaN without purchases; the featuriser imputes the training median).

    Parameters
    ----------
    columns : mapping of str to array-like of shape (n_samples,)
        At least the fields named above, typed as :data:`RETAIL` says.

    Returns
    -------
    dict of str to ndarray of shape (n_samples,), float64
        Keyed by :data:`RETAIL_ENGINEERED`.
    """

    def num(name: str) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64)

    def level(name: str) -> np.ndarray:
        raw = np.asarray(columns[name], dtype=object)
        out = np.full(raw.shape, np.nan)
        for text, value in _LEVELS.items():
            out[raw == text] = value
        return out

    membership_days = np.maximum(num("membership_years") * 365.25, 1.0)
    online, in_store = num("online_purchases"), num("in_store_purchases")
    total = online + in_store
    with np.errstate(invalid="ignore", divide="ignore"):
        online_share = np.where(total > 0, online / total, np.nan)
    return {
        "line_value_usd": num("quantity") * num("unit_price_usd"),
        "engagement_score": (level("app_usage") + level("social_media_engagement") + 2.0 * num("email_subscriptions"))
        / 6.0,
        "recency_ratio": num("days_since_last_purchase") / membership_days,
        "online_share": online_share,
    }


PROFILES = {TELCO.name: TELCO, RETAIL.name: RETAIL}
