"""Dataset profiles: loaded from profile files, read by every package through one attribute API.

A profile is data (:mod:`schemas.profile_model` defines and validates the file format); the
shipped ones live in ``schemas/shipped_profiles/<name>.yaml``. :func:`get_profile` takes a
shipped name or a path to a profile file and returns a :class:`DatasetProfile`, whose
attributes (``source_columns``, ``id_column``, ``features``, ...) are what ingestion,
featurisation and the services read. The only I/O here is :func:`load_profile_file`, which
reads one profile file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from schemas.expressions import evaluate
from schemas.profile_model import FieldSpec, ProfileSpec

#: Folder of the profile files shipped as package data.
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped_profiles"

#: Field type -> the kind names of the first, code-defined profiles (``source_types``), kept for callers.
_LEGACY_KINDS = {
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "yes_no": "yes_no",
    "category": "str",
    "identifier": "str",
    "date": "date",
}


class ProfileError(ValueError):
    """A profile file that cannot be read or does not validate; the message lists every problem."""


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also turns yes/no/on/off into booleans, which
    would silently retype a column called ``No`` or a positive label value ``Yes``."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: ``fields.3.type: Input should be ... (got 'int')``."""
    lines: list[str] = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "profile"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        tail = f" (got {got!r})" if err["type"] not in ("value_error", "missing") and not isinstance(got, dict) else ""
        lines.extend(f"{where}: {part}" for part in msg.split("; "))
        if tail:
            lines[-1] += tail
    return lines


def parse_profile(data: Mapping[str, Any], source: str = "<profile>") -> DatasetProfile:
    """Validate a profile given as a mapping (a parsed YAML or JSON document).

    Raises
    ------
    ProfileError
        Listing every problem, one per line.
    """
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        spec = ProfileSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise ProfileError(f"{source}: " + "\n".join(format_validation_error(exc))) from None
    return DatasetProfile(spec, source)


def load_profile_file(path: str | Path) -> DatasetProfile:
    """Read and validate one profile file (YAML, or JSON, which is YAML too).

    Raises
    ------
    ProfileError
        If the file cannot be read, is not YAML, or does not validate.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile ({exc})") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: builds plain data only
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    return parse_profile(data, str(path))


def shipped_profile_names() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


@cache
def _shipped(name: str) -> DatasetProfile:
    return load_profile_file(SHIPPED_DIR / f"{name}.yaml")


def get_profile(name_or_path: str | Path) -> DatasetProfile:
    """A shipped profile by name, or a profile file by path.

    Parameters
    ----------
    name_or_path : str or Path
        ``"telco"``, ``"retail"``, or a path to a ``.yaml``/``.yml``/``.json`` file.

    Raises
    ------
    KeyError
        With the known names, if ``name_or_path`` is neither a shipped name nor a file.
    ProfileError
        If the file does not validate.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in shipped_profile_names():
        return _shipped(text)
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise ProfileError(f"{path}: no such profile file")
        return load_profile_file(path)
    raise KeyError(f"unknown dataset {text!r}; known: {shipped_profile_names()} or a profile file path")


@dataclass(frozen=True, eq=False)
class DatasetProfile:
    """How one source data set maps onto the event contract and the models.

    Built from a validated :class:`~schemas.profile_model.ProfileSpec`; the attributes are
    views of it.

    Attributes
    ----------
    spec : ProfileSpec
    source : str
        Where the profile came from (a file path).
    name : str
    source_columns : dict of str to str
        Source (CSV) column -> event field, in file order.
    field_types : dict of str to str
        Event field -> profile type (``integer``, ``number``, ``boolean``, ``yes_no``,
        ``category``, ``date``, ``identifier``); a derived id is an ``identifier``.
    source_types : dict of str to str
        The same in the first profiles' kind names (``int``, ``float``, ``bool``, ``yes_no``,
        ``yes_no_label``, ``str``, ``date``).
    id_column : str
        Event field identifying the customer (derived from the row without an id column).
    classification_target : str
        Event field of the churn label (bool once ingested).
    regression_target : str or None
        Event field of the customer value; None: no regressor is trained.
    numeric_features, categorical_features : tuple of str
        Classifier inputs in model order (booleans count as numeric 0/1).
    regression_excluded : tuple of str
        Features the regressor never sees (leakage of its target).
    derived_features : tuple of str
        Features computed by :meth:`derive` (not in the source file).
    """

    spec: ProfileSpec
    source: str = "<profile>"

    # ------------------------------------------------------------------ names
    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def fields_by_name(self) -> dict[str, FieldSpec]:
        """Field specs keyed by event field."""
        return {f.name: f for f in self.spec.fields}

    @cached_property
    def source_columns(self) -> dict[str, str]:
        return {f.column: f.name for f in self.spec.fields}

    @property
    def derives_id(self) -> bool:
        """True when ids are derived from the row (no id column)."""
        return self.spec.id.column is None

    @property
    def id_column(self) -> str:
        return self.spec.id_field

    @cached_property
    def field_types(self) -> dict[str, str]:
        out: dict[str, str] = {f.name: f.type for f in self.spec.fields}
        if self.derives_id:
            out = {self.id_column: "identifier", **out}
        return out

    @cached_property
    def source_types(self) -> dict[str, str]:
        out = {name: _LEGACY_KINDS[kind] for name, kind in self.field_types.items()}
        if out[self.classification_target] == "yes_no":
            out[self.classification_target] = "yes_no_label"
        return out

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field of the typed frame, in order: a derived id first, then the source fields."""
        return tuple(self.field_types)

    # ---------------------------------------------------------------- targets
    @property
    def classification_target(self) -> str:
        return self.spec.label.field

    @property
    def positive_values(self) -> tuple[str, ...]:
        """Label values read as churned (a category label only)."""
        return tuple(self.spec.label.positive_values or ())

    @property
    def regression_target(self) -> str | None:
        return self.spec.value_target

    # --------------------------------------------------------------- features
    @property
    def numeric_features(self) -> tuple[str, ...]:
        return tuple(self.spec.features.numeric)

    @property
    def categorical_features(self) -> tuple[str, ...]:
        return tuple(self.spec.features.categorical)

    @property
    def regression_excluded(self) -> tuple[str, ...]:
        return tuple(self.spec.features.value_leakage)

    @property
    def features(self) -> tuple[str, ...]:
        """Every classifier input, numerics first."""
        return self.numeric_features + self.categorical_features

    def regression_features(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(numeric, categorical) inputs of the regressor: the features less its target and leakage."""
        drop = set(self.regression_excluded) | {self.regression_target}
        return (
            tuple(c for c in self.numeric_features if c not in drop),
            tuple(c for c in self.categorical_features if c not in drop),
        )

    @property
    def derived_features(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.spec.derived)

    def derive(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The derived features, from typed event fields (a frame or a dict of arrays).

        Pure and row-wise, so the batch job, the worker and the API compute them alike.

        Parameters
        ----------
        columns : mapping of str to array-like of shape (n_samples,)
            At least the fields the expressions read, typed as this profile says.

        Returns
        -------
        dict of str to ndarray of shape (n_samples,), float64
            Keyed by :attr:`derived_features`, in order.
        """
        levels = {f.name: f.levels for f in self.spec.fields if f.levels}
        return {d.name: evaluate(d.expression, columns, levels) for d in self.spec.derived}

    # ------------------------------------------------------------ the contract
    @cached_property
    def digest(self) -> str:
        """SHA-256 of the profile's canonical JSON: equal digests, equal contracts."""
        canonical = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_yaml(self) -> str:
        """The profile as a YAML document (defaults included)."""
        return dump_profile_yaml(self.spec.model_dump(mode="json", exclude_none=True))

    def __repr__(self) -> str:
        return f"DatasetProfile(name={self.name!r}, source={self.source!r}, fields={len(self.spec.fields)})"


def dump_profile_yaml(data: Mapping[str, Any]) -> str:
    """A profile mapping as block-style YAML, keys in model order, text that reads back as text."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Quote what YAML 1.1 readers would take for a boolean or a number.
        plain = yaml.safe_load(value) if value else None
        style = "'" if value and (not isinstance(plain, str) or value.lower() in ("yes", "no", "on", "off")) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


#: The IBM Telco customer churn data set (7,043 customers, ``data/``); ``shipped_profiles/telco.yaml``.
TELCO = get_profile("telco")
#: The synthetic retail customers (``batch/retail.py``); ``shipped_profiles/retail.yaml``.
RETAIL = get_profile("retail")
