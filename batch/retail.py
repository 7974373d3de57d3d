"""Synthetic retail customers with behaviour-driven churn and sales, and the retail engineered features.

One row per customer, in the seed system's 78-column retail schema
(:data:`schemas.profiles.RETAIL`), as of :data:`AS_OF`. Nothing is labelled after
the fact: both targets are drawn from the customer's behaviour, which is drawn
from latent traits, so a model can learn them only through what the row shows.

Generative process
------------------
1. **Latent traits** per customer, independent standard normals: affluence ``A``,
   engagement ``E``, satisfaction ``S``, and lapse ``L`` (how far their recent
   activity has dropped below their usual rate). None of them is written out.
2. **Who they are.** Age 18-80 (18 + Gamma(4, 6.5), clipped); income bracket from
   ``A`` and age; education from ``A``; occupation from age and ``A``; marital status
   from age; children ~ Poisson (higher if married); city/state from a fixed list;
   membership years ~ Gamma(1.5, 2) (capped by age); loyalty programme with
   probability ``sigmoid(-0.6 + 0.9 E + 0.15 years)``.
3. **How they shop.** Usual purchase rate ``r`` per month, lognormal:
   ``log r = log 1.8 + 0.45 E + 0.35 loyalty + 0.15 A + 0.4 N(0, 1)``. Over the aggregate
   window ``w = min(12, 12 years)`` months: ``total_transactions = 1 + Poisson(r w e^{-0.3 L})``;
   items per basket ``1 + k`` with ``k`` lognormal in ``A`` and children; price per item
   lognormal (median $14, higher with ``A``); basket value = items x price, reported
   as ``avg_purchase_value`` with LogNormal(0, 0.1) measurement noise.
   Recency: ``days_since_last_purchase ~ Exponential(mean 30.44 / (r e^{-0.9 L}))`` days
   (a Poisson process at the recent rate), at most the membership.
   Online share ``sigmoid(-0.4 + E - 0.025 (age - 40) + 0.4 log(distance / 8 + 0.05))``,
   ``online_purchases ~ Binomial(total_transactions, share)``. Support calls
   ~ Poisson(``exp(-0.4 - 0.7 S + 0.15 log transactions)``). App usage, social media
   (Low/Medium/High) and e-mail subscription follow ``E`` plus noise; website visits
   ~ Poisson(``exp(1.6 + 0.6 E)``). Discounts follow income and loyalty; returned items
   ~ Binomial(items, ``sigmoid(-3.2 - 0.5 S)``).
4. **Outcomes.** ``total_sales = transactions x basket x LogNormal(-0.02, 0.2)`` minus
   discounts and returns (returns capped at 40 % of gross). ``churned ~ Bernoulli(sigmoid(z))`` with
   ``z = -1.55 + 1.0 (log1p(days since) - log 15) - 0.55 (log1p(transactions) - log 20)
   - 1.2 (engagement_score - 0.5) + 0.3 (support calls - 1) - 0.4 log(basket / 40)
   - 0.45 loyalty + 0.5 (-S)``: recency, frequency, engagement, support calls and spend
   drive it; ``S`` is only partly visible (through support calls and returns), so the
   label keeps irreducible noise; ``engagement_score`` is the derived feature of the same
   name in ``schemas/shipped_profiles/retail.yaml``. The churn rate comes out near 22 %.
5. **The last transaction** is the most recent purchase: its date is
   ``AS_OF - days_since_last_purchase`` (weekday, ISO week, month, season, weekend and
   holiday season follow from it; the hour from a daily shopping profile); quantity and unit price come from the
   customer's basket; product and promotion are drawn from fixed catalogues whose
   attributes carry no signal.

Everything is vectorised numpy driven by one ``np.random.default_rng(seed)`` and
fixed catalogues, and the CSV is written by ``pyarrow.csv``: the same seed and
row count give a byte-identical file. Measured with
``/usr/bin/time -v churn data generate retail --rows 1000000 --seed 0 --out /tmp/r.csv``
on a shared 2-core machine under load: 7.7 s CPU (user + sys), 29-31 s wall, peak RSS
1.36 GB, a 557 MB file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from batch.retail_catalogue import (
    BRANDS,
    CATEGORIES,
    CITIES,
    HOUR_WEIGHTS,
    LOW_MED_HIGH,
    PRODUCTS_PER_CATEGORY,
    PROMO_AUDIENCES,
    PROMO_CHANNELS,
    PROMO_TYPES,
    PROMOTIONS,
    SEASONS,
    STORES_PER_CITY,
    WEEKDAYS,
    catalogues,
    cut,
    draw,
    id_array,
    money_array,
    sigmoid,
    text_array,
    yes_no_array,
)
from schemas.profiles import RETAIL, DatasetProfile

logger = logging.getLogger(__name__)

#: The as-of date of every generated data set: aggregates end here.
AS_OF = np.datetime64("2024-12-31", "D")


def generate_table(rows: int, seed: int) -> pa.Table:
    """Generate ``rows`` synthetic retail customers (the process in the module docstring).

    Parameters
    ----------
    rows : int
        Number of customers, >= 1.
    seed : int
        Seed of ``np.random.default_rng``; the same (rows, seed) gives the same table.

    Returns
    -------
    pyarrow.Table
        The 78 seed columns, named and ordered as the source columns of
        :data:`schemas.profiles.RETAIL`; yes/no columns as ``Yes``/``No``, dates as
        ``date32``, money rounded to cents.

    Raises
    ------
    ValueError
        If ``rows`` < 1.
    """
    if rows < 1:
        raise ValueError(f"rows: expected an integer >= 1, got {rows!r}")
    n = int(rows)
    rng = np.random.default_rng(seed)
    cat = catalogues(rng)

    # 1. latent traits
    aff, eng, sat, lapse = (rng.standard_normal(n) for _ in range(4))

    # 2. who they are
    age = np.minimum(np.round(18.0 + rng.gamma(4.0, 6.5, n)), 80.0).astype(np.int64)
    gender = draw(rng, np.tile([0.49, 0.49, 0.02], (n, 1)))
    adult = np.clip((age - 22.0) / 20.0, 0.0, 1.5)
    income = cut(aff + 0.4 * adult + 0.5 * rng.standard_normal(n), (-0.2, 1.2))  # Low/Medium/High
    education = cut(aff + 0.8 * rng.standard_normal(n), (-0.6, 0.6, 1.6))
    p_married = np.clip(0.02 + 0.018 * (age - 18.0), 0.0, 0.62)
    p_divorced = np.clip(0.004 * (age - 25.0), 0.0, 0.15)
    p_widowed = np.clip(0.006 * (age - 55.0), 0.0, 0.2)
    marital = draw(rng, np.column_stack([1.0 - p_married - p_divorced - p_widowed, p_married, p_divorced, p_widowed]))
    married = marital == 1
    children = np.minimum(rng.poisson(np.where(age < 22, 0.05, 0.35 + 1.1 * married)), 6)
    p_retired = np.where(age >= 65, 0.75, np.where(age >= 55, 0.1, 0.0))
    p_student = np.where(age < 25, 0.5, np.where(age < 30, 0.1, 0.0))
    p_unemployed = 0.07 * sigmoid(-aff)
    p_self = np.full(n, 0.12)
    occupation = draw(
        rng,
        np.column_stack(
            [
                np.clip(1.0 - p_retired - p_student - p_unemployed - p_self, 0.0, 1.0),
                p_self,
                p_unemployed,
                p_retired,
                p_student,
            ]
        ),
    )
    city_w = np.array([c[4] for c in CITIES])
    city = rng.choice(len(CITIES), size=n, p=city_w / city_w.sum())
    zip_suffix = rng.integers(0, 100, n)
    years = np.minimum(rng.gamma(1.5, 2.0, n), age - 18.0 + 0.5)
    years = np.maximum(np.round(years, 2), 0.05)
    loyalty = rng.random(n) < sigmoid(-0.6 + 0.9 * eng + 0.15 * years)

    # 3. how they shop
    rate = np.exp(np.log(1.8) + 0.45 * eng + 0.35 * loyalty + 0.15 * aff + 0.4 * rng.standard_normal(n))
    window = np.minimum(12.0, 12.0 * years)
    transactions = 1 + rng.poisson(rate * window * np.exp(-0.3 * lapse))
    extra_items = np.exp(0.4 + 0.15 * aff + 0.1 * np.minimum(children, 3) + 0.25 * rng.standard_normal(n))
    items_per_basket = 1.0 + extra_items
    total_items = transactions + rng.poisson(transactions * extra_items)
    price = np.exp(np.log(14.0) + 0.35 * aff + 0.3 * rng.standard_normal(n))
    basket = items_per_basket * price
    membership_days = np.floor(years * 365.25).astype(np.int64)
    recent_rate = rate * np.exp(-0.9 * lapse)
    days_since = np.minimum(np.floor(rng.exponential(30.44 / recent_rate)), membership_days).astype(np.int64)
    distance = np.round(rng.lognormal(np.log(6.0), 0.6, n), 1)
    same_city = rng.random(n) < 0.9
    store_city = np.where(same_city, city, rng.integers(0, len(CITIES), n))
    distance = np.where(same_city, distance, np.round(rng.lognormal(np.log(60.0), 0.5, n), 1))
    store = store_city * STORES_PER_CITY + rng.integers(0, STORES_PER_CITY, n)
    online_p = sigmoid(-0.4 + eng - 0.025 * (age - 40.0) + 0.4 * np.log(distance / 8.0 + 0.05))
    online = rng.binomial(transactions, online_p)
    support_calls = rng.poisson(np.exp(-0.4 - 0.7 * sat + 0.15 * np.log(transactions)))
    app = cut(eng + 0.7 * rng.standard_normal(n), (-0.5, 0.7))
    social = cut(0.7 * eng + 0.9 * rng.standard_normal(n), (-0.3, 0.9))
    email = rng.random(n) < sigmoid(0.2 + 0.8 * eng)
    visits = rng.poisson(np.exp(1.6 + 0.6 * eng))
    avg_discount = np.clip(0.06 + 0.03 * (income == 0) + 0.04 * loyalty + 0.03 * rng.standard_normal(n), 0.0, 0.5)
    returned_items = rng.binomial(total_items, sigmoid(-3.2 - 0.5 * sat))

    # 4. outcomes
    gross = transactions * basket * np.exp(0.2 * rng.standard_normal(n) - 0.02)
    discounts = gross * avg_discount
    returned_value = np.minimum(returned_items * price * np.exp(0.2 * rng.standard_normal(n)), 0.4 * gross)
    total_sales = np.maximum(gross - discounts - returned_value, 0.01)
    engagement_score = (app + social + 2.0 * email) / 6.0
    z = (
        -1.55
        + 1.0 * (np.log1p(days_since) - np.log(15.0))
        - 0.55 * (np.log1p(transactions) - np.log(20.0))
        - 1.2 * (engagement_score - 0.5)
        + 0.3 * (support_calls - 1.0)
        - 0.4 * np.log(basket / 40.0)
        - 0.45 * loyalty
        - 0.5 * sat
    )
    churned = rng.random(n) < sigmoid(z)
    avg_tx = total_sales / transactions
    spread = 0.35 * np.sqrt(2.0 * np.log(transactions))  # ~ extreme of n lognormal baskets
    max_single = np.maximum(avg_tx * np.exp(spread + 0.05 * rng.standard_normal(n)), avg_tx)
    min_single = np.minimum(avg_tx * np.exp(-spread - 0.05 * np.abs(rng.standard_normal(n))), avg_tx)
    categories = np.minimum(transactions, 1 + rng.poisson(1.8, n))
    avg_purchase_value = basket * np.exp(0.1 * rng.standard_normal(n))
    frequency = 3 - cut(rate, (0.6, 2.5, 12.0))  # 0 Daily .. 3 Yearly

    # 5. the last transaction
    tx_date = AS_OF - days_since.astype("timedelta64[D]")
    day_number = tx_date.astype(np.int64)
    weekday = (day_number + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    thursday = tx_date + (3 - weekday).astype("timedelta64[D]")
    iso_week = (thursday - thursday.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) // 7 + 1
    month = tx_date.astype("datetime64[M]").astype(np.int64) % 12 + 1
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    quantity = 1 + rng.poisson(extra_items)
    unit_price = np.maximum(price * np.exp(0.5 * rng.standard_normal(n)), 0.5)
    discount = np.where(rng.random(n) < 0.4, 0.0, np.clip(avg_discount + 0.05 * rng.standard_normal(n), 0.0, 0.6))
    cat_w = np.array([c[1] for c in CATEGORIES])
    product_category = rng.choice(len(CATEGORIES), size=n, p=cat_w / cat_w.sum())
    product = product_category * PRODUCTS_PER_CATEGORY + rng.integers(0, PRODUCTS_PER_CATEGORY, n)
    promotion = rng.integers(0, PROMOTIONS, n)
    young = np.clip((45.0 - age) / 25.0, 0.0, 1.0)
    payment = draw(
        rng,
        np.column_stack(
            [
                0.15 + 0.25 * (1 - young),
                np.full(n, 0.35),
                np.full(n, 0.25),
                0.05 + 0.4 * young * (0.5 + 0.5 * sigmoid(eng)),
            ]
        ),
    )

    prods, promos, stores = cat["products"], cat["promotions"], cat["stores"]
    city_names = [c[0] for c in CITIES]
    city_states = [c[1] for c in CITIES]
    city_types = ("Urban", "Suburban", "Rural")
    city_type = np.array([city_types.index(c[3]) for c in CITIES])
    zip_prefix = np.array([int(c[2]) for c in CITIES])
    p_idx = {k: v[product] for k, v in prods.items()}
    width = max(7, len(str(n)))
    columns = {
        "customer_id": id_array("C", np.arange(1, n + 1), width),
        "age": pa.array(age),
        "gender": text_array(("Female", "Male", "Other"), gender),
        "income_bracket": text_array(LOW_MED_HIGH, income),
        "loyalty_program": yes_no_array(loyalty),
        "membership_years": pa.array(years),
        "churned": yes_no_array(churned),
        "marital_status": text_array(("Single", "Married", "Divorced", "Widowed"), marital),
        "number_of_children": pa.array(children),
        "education_level": text_array(("High School", "Bachelor's", "Master's", "PhD"), education),
        "occupation": text_array(("Employed", "Self-Employed", "Unemployed", "Retired", "Student"), occupation),
        "transaction_id": id_array("T", np.arange(1, n + 1), width),
        "transaction_date": pa.array(tx_date),
        "product_id": id_array("P", product + 1, 5),
        "product_category": text_array([c[0] for c in CATEGORIES], product_category),
        "quantity": pa.array(quantity),
        "unit_price": money_array(unit_price),
        "discount_applied": pa.array(np.round(discount, 2)),
        "payment_method": text_array(("Cash", "Credit Card", "Debit Card", "Mobile Payment"), payment),
        "store_location": text_array(city_types, city_type[store_city]),
        "transaction_hour": pa.array(hour),
        "day_of_week": text_array(WEEKDAYS, weekday),
        "week_of_year": pa.array(iso_week),
        "month_of_year": pa.array(month),
        "avg_purchase_value": money_array(avg_purchase_value),
        "purchase_frequency": text_array(("Daily", "Weekly", "Monthly", "Yearly"), frequency),
        "last_purchase_date": pa.array(tx_date),
        "avg_discount_used": pa.array(np.round(avg_discount, 3)),
        "preferred_store": id_array("S", store + 1, 3),
        "online_purchases": pa.array(online),
        "in_store_purchases": pa.array(transactions - online),
        "avg_items_per_transaction": pa.array(np.round(total_items / transactions, 2)),
        "avg_transaction_value": money_array(avg_tx),
        "total_returned_items": pa.array(returned_items),
        "total_returned_value": money_array(returned_value),
        "total_sales": money_array(total_sales),
        "total_transactions": pa.array(transactions),
        "total_items_purchased": pa.array(total_items),
        "total_discounts_received": money_array(discounts),
        "avg_spent_per_category": money_array(total_sales / categories),
        "max_single_purchase_value": money_array(max_single),
        "min_single_purchase_value": money_array(min_single),
        "product_name": pc.binary_join_element_wise(
            text_array(BRANDS, p_idx["brand"]),
            text_array([c[0] for c in CATEGORIES], p_idx["category"]),
            id_array("#", product + 1, 5),
            " ",
        ),
        "product_brand": text_array(BRANDS, p_idx["brand"]),
        "product_rating": pa.array(p_idx["rating"]),
        "product_review_count": pa.array(p_idx["reviews"]),
        "product_stock": pa.array(p_idx["stock"]),
        "product_return_rate": pa.array(p_idx["return_rate"]),
        "product_size": text_array(("Small", "Medium", "Large"), p_idx["size"]),
        "product_weight": pa.array(p_idx["weight"]),
        "product_color": text_array(
            ("Black", "White", "Red", "Blue", "Green", "Grey", "Yellow", "Brown"), p_idx["color"]
        ),
        "product_material": text_array(("Cotton", "Plastic", "Metal", "Wood", "Glass", "Paper"), p_idx["material"]),
        "product_manufacture_date": pa.array(p_idx["made"]),
        "product_expiry_date": pa.array(p_idx["expiry"]),
        "product_shelf_life": pa.array(p_idx["shelf"]),
        "promotion_id": id_array("PR", promotion + 1, 4),
        "promotion_type": text_array(PROMO_TYPES, promos["type"][promotion]),
        "promotion_start_date": pa.array(promos["start"][promotion]),
        "promotion_end_date": pa.array(promos["end"][promotion]),
        "promotion_effectiveness": text_array(LOW_MED_HIGH, promos["effectiveness"][promotion]),
        "promotion_channel": text_array(PROMO_CHANNELS, promos["channel"][promotion]),
        "promotion_target_audience": text_array(PROMO_AUDIENCES, promos["audience"][promotion]),
        "customer_zip_code": id_array("", zip_prefix[city] * 100 + zip_suffix, 5),
        "customer_city": text_array(city_names, city),
        "customer_state": text_array(city_states, city),
        "store_zip_code": id_array("", zip_prefix[store_city] * 100 + stores["zip_suffix"][store], 5),
        "store_city": text_array(city_names, store_city),
        "store_state": text_array(city_states, store_city),
        "distance_to_store": pa.array(distance),
        "holiday_season": yes_no_array(month >= 11),
        "season": text_array(SEASONS, month - 1),
        "weekend": yes_no_array(weekday >= 5),
        "customer_support_calls": pa.array(support_calls),
        "email_subscriptions": yes_no_array(email),
        "app_usage": text_array(LOW_MED_HIGH, app),
        "website_visits": pa.array(visits),
        "social_media_engagement": text_array(LOW_MED_HIGH, social),
        "days_since_last_purchase": pa.array(days_since),
    }
    return pa.table(columns)


def write_retail_csv(path: str | Path, rows: int, seed: int) -> Path:
    """Generate ``rows`` customers with ``seed`` and write them as one UTF-8 CSV.

    Returns
    -------
    Path
        ``path``; the same (rows, seed) always writes the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = generate_table(rows, seed)
    pa_csv.write_csv(table, path)
    logger.info("retail data generated rows=%d seed=%d path=%s", rows, seed, path)
    return path


def engineer_features(frame: pd.DataFrame, profile: DatasetProfile = RETAIL) -> pd.DataFrame:
    """The ingested frame with the profile's derived features added (retail's by default).

    The formulas are data: the ``derived`` section of the profile file
    (``schemas/shipped_profiles/retail.yaml``), evaluated by :meth:`DatasetProfile.derive`.
    :func:`batch.features.classification_data` and ``regression_data`` add missing derived
    features themselves, so calling this first is only needed to keep them in the frame.

    Parameters
    ----------
    frame : DataFrame
        Typed by :func:`batch.ingest.read_source_csv` with ``profile``.
    profile : DatasetProfile, default RETAIL

    Returns
    -------
    DataFrame
        A new frame (the input is not modified).
    """
    return frame.assign(**profile.derive(frame))
