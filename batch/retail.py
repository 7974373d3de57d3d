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

from schemas.profiles import RETAIL, DatasetProfile

logger = logging.getLogger(__name__)

#: The as-of date of every generated data set: aggregates end here.
AS_OF = np.datetime64("2024-12-31", "D")

_CITIES = (  # city, state, zip prefix (3 digits), store location type, population weight
    ("New York", "NY", "100", "Urban", 8.3),
    ("Buffalo", "NY", "142", "Suburban", 0.3),
    ("Los Angeles", "CA", "900", "Urban", 3.9),
    ("Fresno", "CA", "937", "Suburban", 0.5),
    ("San Diego", "CA", "921", "Urban", 1.4),
    ("Chicago", "IL", "606", "Urban", 2.7),
    ("Springfield", "IL", "627", "Rural", 0.1),
    ("Houston", "TX", "770", "Urban", 2.3),
    ("Austin", "TX", "787", "Urban", 1.0),
    ("Amarillo", "TX", "791", "Rural", 0.2),
    ("Phoenix", "AZ", "850", "Urban", 1.6),
    ("Tucson", "AZ", "857", "Suburban", 0.5),
    ("Philadelphia", "PA", "191", "Urban", 1.6),
    ("Erie", "PA", "165", "Rural", 0.1),
    ("Miami", "FL", "331", "Urban", 0.5),
    ("Orlando", "FL", "328", "Suburban", 0.3),
    ("Seattle", "WA", "981", "Urban", 0.7),
    ("Spokane", "WA", "992", "Suburban", 0.2),
    ("Denver", "CO", "802", "Urban", 0.7),
    ("Boulder", "CO", "803", "Suburban", 0.1),
    ("Atlanta", "GA", "303", "Urban", 0.5),
    ("Savannah", "GA", "314", "Rural", 0.1),
    ("Boston", "MA", "021", "Urban", 0.7),
    ("Worcester", "MA", "016", "Suburban", 0.2),
    ("Columbus", "OH", "432", "Suburban", 0.9),
    ("Dayton", "OH", "454", "Rural", 0.1),
    ("Nashville", "TN", "372", "Suburban", 0.7),
    ("Knoxville", "TN", "379", "Rural", 0.2),
    ("Portland", "OR", "972", "Suburban", 0.6),
    ("Bend", "OR", "977", "Rural", 0.1),
)
_STORES_PER_CITY = 3
_CATEGORIES = (  # category, weight, shelf life range (days), base price multiplier
    ("Groceries", 0.30, (7, 365), 0.35),
    ("Clothing", 0.18, (365, 1825), 1.6),
    ("Electronics", 0.10, (730, 3650), 4.0),
    ("Home", 0.12, (730, 3650), 1.8),
    ("Beauty", 0.10, (180, 1095), 0.9),
    ("Toys", 0.07, (365, 3650), 1.2),
    ("Sports", 0.07, (365, 3650), 1.7),
    ("Books", 0.06, (1825, 3650), 0.8),
)
_BRANDS = ("Acme", "Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay")
_PRODUCTS_PER_CATEGORY = 250
_PROMOTIONS = 120
_PROMO_TYPES = ("Buy One Get One Free", "20% Off", "Flash Sale", "Loyalty Points", "Free Shipping", "Clearance")
_PROMO_CHANNELS = ("Online", "In-store", "Email", "Social Media", "Mobile App")
_PROMO_AUDIENCES = ("All", "New Customers", "Returning Customers", "Loyalty Members", "Young Adults")
_LOW_MED_HIGH = ("Low", "Medium", "High")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SEASONS = (
    "Winter",
    "Winter",
    "Spring",
    "Spring",
    "Spring",
    "Summer",
    "Summer",
    "Summer",
    "Fall",
    "Fall",
    "Fall",
    "Winter",
)  # by month 1..12
#: Relative shopping activity by hour of day (0..23): closed-ish at night, lunch and evening peaks.
_HOUR_WEIGHTS = np.array(
    [
        0.2,
        0.1,
        0.1,
        0.1,
        0.1,
        0.2,
        0.5,
        1.0,
        2.0,
        3.0,
        4.0,
        5.0,
        6.0,
        5.5,
        4.5,
        4.5,
        5.0,
        6.0,
        6.5,
        5.5,
        4.0,
        2.5,
        1.2,
        0.5,
    ]
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category index per row from a (n, k) matrix of row probabilities (rows sum to 1)."""
    cum = np.cumsum(probs, axis=1)
    u = np.asarray(rng.random(probs.shape[0]))[:, None] * cum[:, -1:]
    return np.minimum((u >= cum).sum(axis=1), probs.shape[1] - 1)


def _cut(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Index of the interval of ``x`` between sorted ``edges`` (0 .. len(edges))."""
    return np.searchsorted(np.asarray(edges), x, side="right")


def _text(levels, idx: np.ndarray) -> pa.Array:
    return pc.take(pa.array(list(levels), pa.string()), pa.array(idx.astype(np.int32)))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers.astype(np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _yes_no(flag: np.ndarray) -> pa.Array:
    return _text(("No", "Yes"), flag.astype(np.int32))


def _money(x: np.ndarray) -> pa.Array:
    return pa.array(np.round(x, 2))


def _catalogues(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Fixed product, promotion and store catalogues (drawn first from the same generator)."""
    n_cat = len(_CATEGORIES)
    n_prod = n_cat * _PRODUCTS_PER_CATEGORY
    category = np.repeat(np.arange(n_cat), _PRODUCTS_PER_CATEGORY)
    shelf_lo = np.array([c[2][0] for c in _CATEGORIES])[category]
    shelf_hi = np.array([c[2][1] for c in _CATEGORIES])[category]
    shelf = rng.integers(shelf_lo, shelf_hi + 1)
    made = np.datetime64("2022-01-01", "D") + rng.integers(0, 3 * 365, n_prod)
    products = {
        "category": category,
        "brand": rng.integers(0, len(_BRANDS), n_prod),
        "rating": np.round(1.0 + 4.0 * rng.beta(5.0, 2.0, n_prod), 1),
        "reviews": np.floor(rng.lognormal(3.5, 1.2, n_prod)).astype(np.int64),
        "stock": rng.poisson(180, n_prod),
        "return_rate": np.round(rng.beta(2.0, 28.0, n_prod), 3),
        "size": rng.integers(0, 3, n_prod),
        "weight": np.maximum(np.round(rng.lognormal(-0.5, 0.9, n_prod), 2), 0.01),
        "color": rng.integers(0, 8, n_prod),
        "material": rng.integers(0, 6, n_prod),
        "made": made,
        "shelf": shelf,
        "expiry": made + shelf,
    }
    start = np.datetime64("2023-01-01", "D") + rng.integers(0, 700, _PROMOTIONS)
    promotions = {
        "type": rng.integers(0, len(_PROMO_TYPES), _PROMOTIONS),
        "channel": rng.integers(0, len(_PROMO_CHANNELS), _PROMOTIONS),
        "audience": rng.integers(0, len(_PROMO_AUDIENCES), _PROMOTIONS),
        "effectiveness": rng.integers(0, 3, _PROMOTIONS),
        "start": start,
        "end": start + rng.integers(3, 61, _PROMOTIONS),
    }
    n_store = len(_CITIES) * _STORES_PER_CITY
    stores = {
        "city": np.repeat(np.arange(len(_CITIES)), _STORES_PER_CITY),
        "zip_suffix": rng.integers(0, 100, n_store),
    }
    return {"products": products, "promotions": promotions, "stores": stores}


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
    cat = _catalogues(rng)

    # 1. latent traits
    aff, eng, sat, lapse = (rng.standard_normal(n) for _ in range(4))

    # 2. who they are
    age = np.minimum(np.round(18.0 + rng.gamma(4.0, 6.5, n)), 80.0).astype(np.int64)
    gender = _draw(rng, np.tile([0.49, 0.49, 0.02], (n, 1)))
    adult = np.clip((age - 22.0) / 20.0, 0.0, 1.5)
    income = _cut(aff + 0.4 * adult + 0.5 * rng.standard_normal(n), (-0.2, 1.2))  # Low/Medium/High
    education = _cut(aff + 0.8 * rng.standard_normal(n), (-0.6, 0.6, 1.6))
    p_married = np.clip(0.02 + 0.018 * (age - 18.0), 0.0, 0.62)
    p_divorced = np.clip(0.004 * (age - 25.0), 0.0, 0.15)
    p_widowed = np.clip(0.006 * (age - 55.0), 0.0, 0.2)
    marital = _draw(rng, np.column_stack([1.0 - p_married - p_divorced - p_widowed, p_married, p_divorced, p_widowed]))
    married = marital == 1
    children = np.minimum(rng.poisson(np.where(age < 22, 0.05, 0.35 + 1.1 * married)), 6)
    p_retired = np.where(age >= 65, 0.75, np.where(age >= 55, 0.1, 0.0))
    p_student = np.where(age < 25, 0.5, np.where(age < 30, 0.1, 0.0))
    p_unemployed = 0.07 * _sigmoid(-aff)
    p_self = np.full(n, 0.12)
    occupation = _draw(
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
    city_w = np.array([c[4] for c in _CITIES])
    city = rng.choice(len(_CITIES), size=n, p=city_w / city_w.sum())
    zip_suffix = rng.integers(0, 100, n)
    years = np.minimum(rng.gamma(1.5, 2.0, n), age - 18.0 + 0.5)
    years = np.maximum(np.round(years, 2), 0.05)
    loyalty = rng.random(n) < _sigmoid(-0.6 + 0.9 * eng + 0.15 * years)

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
    store_city = np.where(same_city, city, rng.integers(0, len(_CITIES), n))
    distance = np.where(same_city, distance, np.round(rng.lognormal(np.log(60.0), 0.5, n), 1))
    store = store_city * _STORES_PER_CITY + rng.integers(0, _STORES_PER_CITY, n)
    online_p = _sigmoid(-0.4 + eng - 0.025 * (age - 40.0) + 0.4 * np.log(distance / 8.0 + 0.05))
    online = rng.binomial(transactions, online_p)
    support_calls = rng.poisson(np.exp(-0.4 - 0.7 * sat + 0.15 * np.log(transactions)))
    app = _cut(eng + 0.7 * rng.standard_normal(n), (-0.5, 0.7))
    social = _cut(0.7 * eng + 0.9 * rng.standard_normal(n), (-0.3, 0.9))
    email = rng.random(n) < _sigmoid(0.2 + 0.8 * eng)
    visits = rng.poisson(np.exp(1.6 + 0.6 * eng))
    avg_discount = np.clip(0.06 + 0.03 * (income == 0) + 0.04 * loyalty + 0.03 * rng.standard_normal(n), 0.0, 0.5)
    returned_items = rng.binomial(total_items, _sigmoid(-3.2 - 0.5 * sat))

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
    churned = rng.random(n) < _sigmoid(z)
    avg_tx = total_sales / transactions
    spread = 0.35 * np.sqrt(2.0 * np.log(transactions))  # ~ extreme of n lognormal baskets
    max_single = np.maximum(avg_tx * np.exp(spread + 0.05 * rng.standard_normal(n)), avg_tx)
    min_single = np.minimum(avg_tx * np.exp(-spread - 0.05 * np.abs(rng.standard_normal(n))), avg_tx)
    categories = np.minimum(transactions, 1 + rng.poisson(1.8, n))
    avg_purchase_value = basket * np.exp(0.1 * rng.standard_normal(n))
    frequency = 3 - _cut(rate, (0.6, 2.5, 12.0))  # 0 Daily .. 3 Yearly

    # 5. the last transaction
    tx_date = AS_OF - days_since.astype("timedelta64[D]")
    day_number = tx_date.astype(np.int64)
    weekday = (day_number + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    thursday = tx_date + (3 - weekday).astype("timedelta64[D]")
    iso_week = (thursday - thursday.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) // 7 + 1
    month = tx_date.astype("datetime64[M]").astype(np.int64) % 12 + 1
    hour = rng.choice(24, size=n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    quantity = 1 + rng.poisson(extra_items)
    unit_price = np.maximum(price * np.exp(0.5 * rng.standard_normal(n)), 0.5)
    discount = np.where(rng.random(n) < 0.4, 0.0, np.clip(avg_discount + 0.05 * rng.standard_normal(n), 0.0, 0.6))
    cat_w = np.array([c[1] for c in _CATEGORIES])
    product_category = rng.choice(len(_CATEGORIES), size=n, p=cat_w / cat_w.sum())
    product = product_category * _PRODUCTS_PER_CATEGORY + rng.integers(0, _PRODUCTS_PER_CATEGORY, n)
    promotion = rng.integers(0, _PROMOTIONS, n)
    young = np.clip((45.0 - age) / 25.0, 0.0, 1.0)
    payment = _draw(
        rng,
        np.column_stack(
            [
                0.15 + 0.25 * (1 - young),
                np.full(n, 0.35),
                np.full(n, 0.25),
                0.05 + 0.4 * young * (0.5 + 0.5 * _sigmoid(eng)),
            ]
        ),
    )

    prods, promos, stores = cat["products"], cat["promotions"], cat["stores"]
    city_names = [c[0] for c in _CITIES]
    city_states = [c[1] for c in _CITIES]
    city_types = ("Urban", "Suburban", "Rural")
    city_type = np.array([city_types.index(c[3]) for c in _CITIES])
    zip_prefix = np.array([int(c[2]) for c in _CITIES])
    p_idx = {k: v[product] for k, v in prods.items()}
    width = max(7, len(str(n)))
    columns = {
        "customer_id": _ids("C", np.arange(1, n + 1), width),
        "age": pa.array(age),
        "gender": _text(("Female", "Male", "Other"), gender),
        "income_bracket": _text(_LOW_MED_HIGH, income),
        "loyalty_program": _yes_no(loyalty),
        "membership_years": pa.array(years),
        "churned": _yes_no(churned),
        "marital_status": _text(("Single", "Married", "Divorced", "Widowed"), marital),
        "number_of_children": pa.array(children),
        "education_level": _text(("High School", "Bachelor's", "Master's", "PhD"), education),
        "occupation": _text(("Employed", "Self-Employed", "Unemployed", "Retired", "Student"), occupation),
        "transaction_id": _ids("T", np.arange(1, n + 1), width),
        "transaction_date": pa.array(tx_date),
        "product_id": _ids("P", product + 1, 5),
        "product_category": _text([c[0] for c in _CATEGORIES], product_category),
        "quantity": pa.array(quantity),
        "unit_price": _money(unit_price),
        "discount_applied": pa.array(np.round(discount, 2)),
        "payment_method": _text(("Cash", "Credit Card", "Debit Card", "Mobile Payment"), payment),
        "store_location": _text(city_types, city_type[store_city]),
        "transaction_hour": pa.array(hour),
        "day_of_week": _text(_WEEKDAYS, weekday),
        "week_of_year": pa.array(iso_week),
        "month_of_year": pa.array(month),
        "avg_purchase_value": _money(avg_purchase_value),
        "purchase_frequency": _text(("Daily", "Weekly", "Monthly", "Yearly"), frequency),
        "last_purchase_date": pa.array(tx_date),
        "avg_discount_used": pa.array(np.round(avg_discount, 3)),
        "preferred_store": _ids("S", store + 1, 3),
        "online_purchases": pa.array(online),
        "in_store_purchases": pa.array(transactions - online),
        "avg_items_per_transaction": pa.array(np.round(total_items / transactions, 2)),
        "avg_transaction_value": _money(avg_tx),
        "total_returned_items": pa.array(returned_items),
        "total_returned_value": _money(returned_value),
        "total_sales": _money(total_sales),
        "total_transactions": pa.array(transactions),
        "total_items_purchased": pa.array(total_items),
        "total_discounts_received": _money(discounts),
        "avg_spent_per_category": _money(total_sales / categories),
        "max_single_purchase_value": _money(max_single),
        "min_single_purchase_value": _money(min_single),
        "product_name": pc.binary_join_element_wise(
            _text(_BRANDS, p_idx["brand"]),
            _text([c[0] for c in _CATEGORIES], p_idx["category"]),
            _ids("#", product + 1, 5),
            " ",
        ),
        "product_brand": _text(_BRANDS, p_idx["brand"]),
        "product_rating": pa.array(p_idx["rating"]),
        "product_review_count": pa.array(p_idx["reviews"]),
        "product_stock": pa.array(p_idx["stock"]),
        "product_return_rate": pa.array(p_idx["return_rate"]),
        "product_size": _text(("Small", "Medium", "Large"), p_idx["size"]),
        "product_weight": pa.array(p_idx["weight"]),
        "product_color": _text(("Black", "White", "Red", "Blue", "Green", "Grey", "Yellow", "Brown"), p_idx["color"]),
        "product_material": _text(("Cotton", "Plastic", "Metal", "Wood", "Glass", "Paper"), p_idx["material"]),
        "product_manufacture_date": pa.array(p_idx["made"]),
        "product_expiry_date": pa.array(p_idx["expiry"]),
        "product_shelf_life": pa.array(p_idx["shelf"]),
        "promotion_id": _ids("PR", promotion + 1, 4),
        "promotion_type": _text(_PROMO_TYPES, promos["type"][promotion]),
        "promotion_start_date": pa.array(promos["start"][promotion]),
        "promotion_end_date": pa.array(promos["end"][promotion]),
        "promotion_effectiveness": _text(_LOW_MED_HIGH, promos["effectiveness"][promotion]),
        "promotion_channel": _text(_PROMO_CHANNELS, promos["channel"][promotion]),
        "promotion_target_audience": _text(_PROMO_AUDIENCES, promos["audience"][promotion]),
        "customer_zip_code": _ids("", zip_prefix[city] * 100 + zip_suffix, 5),
        "customer_city": _text(city_names, city),
        "customer_state": _text(city_states, city),
        "store_zip_code": _ids("", zip_prefix[store_city] * 100 + stores["zip_suffix"][store], 5),
        "store_city": _text(city_names, store_city),
        "store_state": _text(city_states, store_city),
        "distance_to_store": pa.array(distance),
        "holiday_season": _yes_no(month >= 11),
        "season": _text(_SEASONS, month - 1),
        "weekend": _yes_no(weekday >= 5),
        "customer_support_calls": pa.array(support_calls),
        "email_subscriptions": _yes_no(email),
        "app_usage": _text(_LOW_MED_HIGH, app),
        "website_visits": pa.array(visits),
        "social_media_engagement": _text(_LOW_MED_HIGH, social),
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
