"""The text normaliser of a dataset profile: one rule for ingest, the stream and the API.

A profile's ``text`` section (:class:`schemas.profile_model.TextRules`) says how text is
normalised before it is parsed, compared or one-hot encoded:

1. Unicode normalisation (``unicode_form``: NFKC by default; an all-ASCII value is unchanged
   by NFKC and NFC, so it is skipped);
2. trimming (``trim``): leading and trailing white space, :data:`WHITE_SPACE`: the characters
   Python's ``str.isspace`` and Arrow's ``utf8_trim_whitespace`` both count (the Unicode
   ``White_Space`` property plus the separators U+001C..U+001F);
3. case-folding (``casefold``, ``str.casefold``) of category values only: identifiers are
   never case-folded, yes/no and true/false are read case-insensitively anyway.

:func:`normalise_text` is the rule on one value; :class:`TextNormaliser` applies it to
columns of events, computing each distinct value once (categories repeat, so a column of
50,000 events costs a few dictionary look-ups per event). Batch ingest applies the same rule
with Arrow compute (``batch.ingest.normalise_text``); a unit test holds the two equal.
Pure code, no I/O.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from schemas.profile_model import TextRules

#: White space trimmed from text: what Arrow's utf8_trim_whitespace and Python's str.strip() strip.
WHITE_SPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
#: Field types whose values are text that the normaliser rewrites.
TEXT_TYPES = ("category", "identifier", "date")


def normalise_text(value: str, rules: TextRules, field_type: str = "category") -> str:
    """One text value after a profile's rules.

    Parameters
    ----------
    value : str
    rules : TextRules
        The profile's ``text`` section.
    field_type : str, default "category"
        The field's type; only ``category`` values are case-folded.

    Returns
    -------
    str
        The normalised value (``""`` for a value that is blank after trimming).
    """
    if rules.unicode_form != "none" and not value.isascii():
        value = unicodedata.normalize(rules.unicode_form, value)
    if rules.trim:
        value = value.strip(WHITE_SPACE)
    if rules.casefold and field_type == "category":
        value = value.casefold()
    return value


#: The ASCII characters of :data:`WHITE_SPACE`, as bytes.
_ASCII_WHITE_SPACE = bytes(c for c in WHITE_SPACE.encode("latin-1", "ignore") if c < 128)


def _no_ascii_white_space(text: str) -> bool:
    """Whether ASCII ``text`` holds none of :data:`WHITE_SPACE` (then no value of it needs trimming)."""
    data = text.encode("ascii")
    return len(data.translate(None, _ASCII_WHITE_SPACE)) == len(data)


def normalise_texts(values: Sequence[str], rules: TextRules, field_type: str = "category") -> list[str]:
    """:func:`normalise_text` of each value, without a per-value Unicode check when all are ASCII.

    Parameters
    ----------
    values : sequence of str
    rules : TextRules
    field_type : str, default "category"

    Returns
    -------
    list of str
    """
    text = "".join(values)
    ascii_only = text.isascii()
    if rules.unicode_form != "none" and not ascii_only:
        return [normalise_text(v, rules, field_type) for v in values]
    out = list(values)  # all ASCII: NFKC and NFC leave every value unchanged
    if rules.trim and not (ascii_only and _no_ascii_white_space(text)):
        out = [v.strip(WHITE_SPACE) for v in out]
    if rules.casefold and field_type == "category":
        out = [v.casefold() for v in out]
    return out


class _Memo(dict[str, str]):
    """``normalise_text`` of each key, computed on first look-up."""

    def __init__(self, rules: TextRules, field_type: str) -> None:
        super().__init__()
        self.rules, self.field_type = rules, field_type

    def __missing__(self, key: str) -> str:
        value = normalise_text(key, self.rules, self.field_type)
        if len(self) < 100_000:  # identifiers never repeat: do not keep every one
            self[key] = value
        return value


class TextNormaliser:
    """:func:`normalise_text` over columns of values, each distinct value normalised once.

    Parameters
    ----------
    rules : TextRules
    field_types : mapping of str to str
        Field name -> profile type; only text fields (:data:`TEXT_TYPES`) are normalised.
    """

    def __init__(self, rules: TextRules, field_types: dict[str, str]) -> None:
        self.rules = rules
        self._memo = {name: _Memo(rules, kind) for name, kind in field_types.items() if kind in TEXT_TYPES}
        # Nothing to do at all: the values pass unchanged (no normalisation configured).
        self.identity = rules.unicode_form == "none" and not rules.trim and not rules.casefold

    def values(self, name: str, values: Iterable[str | None]) -> list[str | None]:
        """Normalised values of one text field (``None`` stays ``None``).

        Parameters
        ----------
        name : str
            A text field of the profile.
        values : iterable of str or None

        Returns
        -------
        list of str or None
        """
        memo = self._memo[name]
        if self.identity:
            return list(values)
        values = values if isinstance(values, (list, tuple)) else list(values)
        get = memo.__getitem__
        if None in values:
            return [None if v is None else get(v) for v in values]
        return list(map(get, values))

    def unchanged(self, name: str, values: Iterable[str]) -> bool:
        """Whether every value of text field ``name`` is already normalised (the rules leave it as it is)."""
        if self.identity:
            return True
        memo = self._memo[name]
        return all(memo[v] == v for v in values)

    def value(self, name: str, value: str) -> str:
        """Normalised value of one text field."""
        return value if self.identity else self._memo[name][value]
