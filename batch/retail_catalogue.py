"""The retail generator's fixed catalogues (cities, categories, products, promotions, stores) and array helpers.

:mod:`batch.retail` draws customers; their last transaction points into these catalogues,
whose attributes carry no signal. The catalogues are drawn first from the generator's own
``np.random.default_rng(seed)``, so the same seed gives the same file.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CITIES = (  # city, state, zip prefix (3 digits), store location type, population weight
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
STORES_PER_CITY = 3
CATEGORIES = (  # category, weight, shelf life range (days), base price multiplier
    ("Groceries", 0.30, (7, 365), 0.35),
    ("Clothing", 0.18, (365, 1825), 1.6),
    ("Electronics", 0.10, (730, 3650), 4.0),
    ("Home", 0.12, (730, 3650), 1.8),
    ("Beauty", 0.10, (180, 1095), 0.9),
    ("Toys", 0.07, (365, 3650), 1.2),
    ("Sports", 0.07, (365, 3650), 1.7),
    ("Books", 0.06, (1825, 3650), 0.8),
)
BRANDS = ("Acme", "Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay")
PRODUCTS_PER_CATEGORY = 250
PROMOTIONS = 120
PROMO_TYPES = ("Buy One Get One Free", "20% Off", "Flash Sale", "Loyalty Points", "Free Shipping", "Clearance")
PROMO_CHANNELS = ("Online", "In-store", "Email", "Social Media", "Mobile App")
PROMO_AUDIENCES = ("All", "New Customers", "Returning Customers", "Loyalty Members", "Young Adults")
LOW_MED_HIGH = ("Low", "Medium", "High")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SEASONS = (
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
HOUR_WEIGHTS = np.array(
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


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category index per row from a (n, k) matrix of row probabilities (rows sum to 1)."""
    cum = np.cumsum(probs, axis=1)
    u = np.asarray(rng.random(probs.shape[0]))[:, None] * cum[:, -1:]
    return np.minimum((u >= cum).sum(axis=1), probs.shape[1] - 1)


def cut(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Index of the interval of ``x`` between sorted ``edges`` (0 .. len(edges))."""
    return np.searchsorted(np.asarray(edges), x, side="right")


def text_array(levels, idx: np.ndarray) -> pa.Array:
    return pc.take(pa.array(list(levels), pa.string()), pa.array(idx.astype(np.int32)))


def id_array(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers.astype(np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def yes_no_array(flag: np.ndarray) -> pa.Array:
    return text_array(("No", "Yes"), flag.astype(np.int32))


def money_array(x: np.ndarray) -> pa.Array:
    return pa.array(np.round(x, 2))


def catalogues(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Fixed product, promotion and store catalogues (drawn first from the same generator)."""
    n_cat = len(CATEGORIES)
    n_prod = n_cat * PRODUCTS_PER_CATEGORY
    category = np.repeat(np.arange(n_cat), PRODUCTS_PER_CATEGORY)
    shelf_lo = np.array([c[2][0] for c in CATEGORIES])[category]
    shelf_hi = np.array([c[2][1] for c in CATEGORIES])[category]
    shelf = rng.integers(shelf_lo, shelf_hi + 1)
    made = np.datetime64("2022-01-01", "D") + rng.integers(0, 3 * 365, n_prod)
    products = {
        "category": category,
        "brand": rng.integers(0, len(BRANDS), n_prod),
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
    start = np.datetime64("2023-01-01", "D") + rng.integers(0, 700, PROMOTIONS)
    promotions = {
        "type": rng.integers(0, len(PROMO_TYPES), PROMOTIONS),
        "channel": rng.integers(0, len(PROMO_CHANNELS), PROMOTIONS),
        "audience": rng.integers(0, len(PROMO_AUDIENCES), PROMOTIONS),
        "effectiveness": rng.integers(0, 3, PROMOTIONS),
        "start": start,
        "end": start + rng.integers(3, 61, PROMOTIONS),
    }
    n_store = len(CITIES) * STORES_PER_CITY
    stores = {
        "city": np.repeat(np.arange(len(CITIES)), STORES_PER_CITY),
        "zip_suffix": rng.integers(0, 100, n_store),
    }
    return {"products": products, "promotions": promotions, "stores": stores}
