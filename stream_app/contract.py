"""The contract a worker or the API serves: one data set's event model, decoder and event featurisation.

:class:`EventContract` ties a dataset profile to what the hot path needs of it:

- the generated event model (:func:`schemas.events.customer_event_model`) and its fast
  :class:`~stream_app.decode.Decoder`;
- :meth:`EventContract.columns`: valid events to the named input columns of a model, the
  way batch featurises a typed frame: text normalised by the profile's one normaliser
  (:mod:`schemas.normalise`), nulls read by each field's blank rule (``fill`` values,
  ``keep`` as NaN for the training median), flags as 0/1 and the derived features computed
  by :meth:`schemas.profiles.DatasetProfile.derive`.

The worker's micro-batches and the API's requests both go through it, so a customer scores
the same on Kafka, over HTTP and in the batch job's hold-out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from schemas.events import CustomerEventBase, customer_event_model
from schemas.expressions import expression_names
from schemas.normalise import TEXT_TYPES, TextNormaliser, normalise_text, normalise_texts
from schemas.profiles import TELCO, DatasetProfile
from stream_app.decode import Decoder, decoder_for


def _index_of(values: Sequence[str], order: Sequence[str]) -> np.ndarray:
    """Position of each value in ``order`` (which holds every one of them), as an index array.

    One ``itemgetter`` call looks every value up in a table of their positions, written
    as single bytes up to 256 distinct values and joined (no Python call or int per value);
    the hashes are cached since the decoder's checks built the set of distinct values.

    Returns
    -------
    ndarray of shape (len(values),), uint8 or intp
    """
    if len(order) > 256:
        where = dict(zip(order, range(len(order))))
        return np.fromiter(map(where.__getitem__, values), dtype=np.intp, count=len(values))
    as_byte = dict(zip(order, (bytes((i,)) for i in range(len(order)))))
    picked = itemgetter(*values)(as_byte) if len(values) > 1 else tuple(as_byte[v] for v in values)
    return np.frombuffer(b"".join(picked), dtype=np.uint8)


class EventContract:
    """One data set's contract on the hot path (build with :meth:`for_profile`: cached per digest).

    Parameters
    ----------
    profile : DatasetProfile

    Attributes
    ----------
    profile : DatasetProfile
    digest : str
        The contract hash (the profile's digest) a model must record to serve these events.
    event_model : type
        The ``customers`` topic contract (the prediction API's body is
        :func:`schemas.events.customer_input_model` of the same profile).
    decoder : Decoder
    normaliser : TextNormaliser
    id_field : str
        The event field of the customer id (the key of scores and alerts).
    """

    def __init__(self, profile: DatasetProfile) -> None:
        self.profile = profile
        self.digest = profile.digest
        self.event_model: type[CustomerEventBase] = customer_event_model(profile)
        self.field_types = dict(profile.field_types)
        # Ids do not repeat: the decoder checks them without a set of their distinct values.
        ids = {name for name, kind in self.field_types.items() if kind == "identifier"}
        self.decoder: Decoder = decoder_for(self.event_model, {"event_id", *ids})
        self._text_rules = profile.spec.text
        self.normaliser = TextNormaliser(profile.spec.text, self.field_types)
        self.id_field = profile.id_column
        self._fill: dict[str, Any] = {
            f.name: f.missing.value for f in profile.spec.fields if f.missing is not None and f.missing.blank == "fill"
        }
        self._derived = tuple(profile.derived_features)
        self._derived_inputs = tuple(sorted({n for d in profile.spec.derived for n in expression_names(d.expression)}))

    _CACHE: dict[str, EventContract] = {}

    @classmethod
    def for_profile(cls, profile: DatasetProfile) -> EventContract:
        """The contract of ``profile`` (one instance per profile digest)."""
        contract = cls._CACHE.get(profile.digest)
        if contract is None:
            contract = cls._CACHE[profile.digest] = cls(profile)
        return contract

    @property
    def name(self) -> str:
        """The profile's name."""
        return self.profile.name

    def provides(self) -> set[str]:
        """Every column :meth:`columns` can give a model: the event fields and the derived features."""
        return set(self.field_types) | set(self._derived)

    def normalised_id(self, value: str) -> str:
        """A customer id after the profile's text rules (trimmed, Unicode-normalised, never case-folded)."""
        # Not memoised: ids do not repeat.
        return normalise_text(value, self._text_rules, "identifier")

    def normalised_ids(self, values: Sequence[str]) -> list[str]:
        """:meth:`normalised_id` of each value (one check for all-ASCII ids, the common case)."""
        return normalise_texts(values, self._text_rules, "identifier")

    def columns(
        self,
        rows: Sequence[Mapping[str, Any]],
        names: Sequence[str],
        fields: Mapping[str, Sequence[Any]] | None = None,
        distinct: Mapping[str, set[str]] | None = None,
    ) -> dict[str, np.ndarray]:
        """The named input columns of valid events, featurised as batch featurises a typed frame.

        Parameters
        ----------
        rows : sequence of mapping
            Valid events as field dicts (every contract field present, as the decoder leaves
            them; an omitted optional field is None).
        names : sequence of str
            A model's ``feature_names_in``: event fields and derived features.
        fields : mapping of str to sequence, optional
            The same events' values per field, in the order of ``rows``
            (:attr:`~stream_app.decode.Decoded.fields`): read instead of the rows.
        distinct : mapping of str to set of str, optional
            With ``fields``: the distinct values of text fields without nulls
            (:attr:`~stream_app.decode.Decoded.distinct`). When the profile's rules leave
            all of a field's values unchanged, its column is built without normalising
            value by value.

        Returns
        -------
        dict of str to ndarray of shape (n_rows,)
            Text fields as str (normalised, a null filled by its ``fill`` value); every
            other field float64 (flags 0/1, a null filled or NaN); derived features float64.

        Raises
        ------
        KeyError
            If a name is neither a field nor a derived feature of the profile.
        """
        return self.columns_and_codes(rows, names, fields, distinct)[0]

    def columns_and_codes(
        self,
        rows: Sequence[Mapping[str, Any]],
        names: Sequence[str],
        fields: Mapping[str, Sequence[Any]] | None = None,
        distinct: Mapping[str, set[str]] | None = None,
        categories: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """:meth:`columns`, and the category codes of the text columns it reads through their distinct values.

        A text field in ``distinct`` whose values the profile's rules leave unchanged (the
        common case) is read through one look-up per value in a table of its few distinct
        values, which gives its column and, for a field in ``categories``, each value's index
        there: what :meth:`~scratch_models.preprocessing.TabularPreprocessor.transform` takes
        as ``codes`` instead of searching the text again.

        Parameters
        ----------
        rows, names, fields, distinct
            As for :meth:`columns`.
        categories : mapping of str to ndarray of shape (n_categories,), str, optional
            A preprocessor's sorted training categories per categorical column (``categories_``).

        Returns
        -------
        columns : dict of str to ndarray of shape (n_rows,)
            :meth:`columns`, the same arrays.
        codes : dict of str to ndarray of shape (n_rows,), intp
            For the fields of ``categories`` read through their distinct values: the index of
            each value in its categories, -1 for a value not among them.

        Raises
        ------
        KeyError
            If a name is neither a field nor a derived feature of the profile.
        """
        derived = [n for n in names if n in self._derived]
        source = [n for n in names if n not in self._derived]
        if derived:
            source += [n for n in self._derived_inputs if n not in source]
        if not rows:
            return {name: np.empty(0) for name in names}, {}
        table: list[Sequence[Any]]
        if fields is not None:
            table = [fields[name] for name in source]
        else:
            get = itemgetter(*source)
            table = list(zip(*map(get, rows))) if len(source) > 1 else [tuple(map(get, rows))]
        cols: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray] = {}
        for name, values in zip(source, table):
            if self.field_types[name] in TEXT_TYPES:
                seen = distinct.get(name) if distinct is not None else None
                if seen and self.normaliser.unchanged(name, seen):
                    # As np.asarray(values, dtype=str) gives, with the width known from the distinct values.
                    width = f"<U{max(1, *map(len, seen))}"
                    cats = categories.get(name) if categories is not None else None
                    if cats is None:
                        cols[name] = np.array(values, dtype=width)
                        continue
                    order = list(seen)
                    index = _index_of(values, order)
                    cols[name] = np.array(order, dtype=width)[index]
                    position = dict(zip(cats.tolist(), range(len(cats))))
                    codes[name] = np.array([position.get(v, -1) for v in order], dtype=np.intp)[index]
                    continue
                text = self.normaliser.values(name, values)
                if None in text:
                    fill = self._fill.get(name, "")
                    text = [fill if v is None else v for v in text]
                cols[name] = np.asarray(text, dtype=str)
            else:
                column = np.asarray(values, dtype=np.float64)
                # numpy reads None as NaN, and a valid event holds no other NaN (JSON has none, the
                # contract wants finite numbers): a NaN-free column had no null to fill.
                if np.isnan(column).any() and None in values:
                    fill = self._fill.get(name)
                    missing = np.nan if fill is None else float(fill)
                    column = np.asarray([missing if v is None else v for v in values], dtype=np.float64)
                cols[name] = column
        if derived:
            cols.update(self.profile.derive(cols))
        return {name: cols[name] for name in names}, codes

    def event_columns(self, events: Sequence[CustomerEventBase], names: Sequence[str]) -> dict[str, np.ndarray]:
        """:meth:`columns` of validated pydantic events (the API's path)."""
        return self.columns([e.__dict__ for e in events], names)


#: Telco's contract (the default data set).
TELCO_CONTRACT = EventContract.for_profile(TELCO)
