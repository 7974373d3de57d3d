"""``.npz`` + JSON persistence. Never pickle.

An artifact is one ``.npz`` file: named arrays plus a ``__header__`` entry holding
a UTF-8 JSON document (class, params, learned scalars, format version). Arrays
are read with ``allow_pickle=False``, so an object array in a tampered artifact
raises instead of running code.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

#: Bump when the layout changes incompatibly; :func:`load_npz` refuses others.
FORMAT_VERSION = 1
_HEADER_KEY = "__header__"


class ArtifactError(ValueError):
    """An artifact is unreadable, of another format version, or of another class."""


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_npz(path: str | Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` and a JSON ``header`` to one ``.npz``.

    Parameters
    ----------
    path : str or Path
        Target; ``.npz`` is appended when missing.
    header : dict
        JSON-serialisable metadata; ``format_version`` is added.
    arrays : dict of str to ndarray
        Numeric or fixed-width string arrays (no object dtype).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ArtifactError
        If an array has object dtype (it could only be stored by pickling).
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    for key, arr in arrays.items():
        if key == _HEADER_KEY:
            raise ArtifactError(f"array name {_HEADER_KEY!r} is reserved")
        if np.asarray(arr).dtype == object:
            raise ArtifactError(f"array {key!r} has object dtype; artifacts never pickle")
    doc = dict(header, format_version=FORMAT_VERSION)
    payload: dict[str, Any] = {_HEADER_KEY: np.array(json.dumps(doc, default=_json_default, sort_keys=True))}
    payload.update({k: np.asarray(v) for k, v in arrays.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **payload)
    return path


def load_npz(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read an artifact written by :func:`save_npz`.

    Returns
    -------
    header : dict
    arrays : dict of str to ndarray

    Raises
    ------
    ArtifactError
        If the file is not a valid artifact, holds pickled objects, or has another
        format version.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            if _HEADER_KEY not in data.files:
                raise ArtifactError(f"{path}: no {_HEADER_KEY} entry; not a churn-stream artifact")
            header = json.loads(str(data[_HEADER_KEY]))
            arrays = {k: data[k] for k in data.files if k != _HEADER_KEY}
    except ArtifactError:
        raise
    except (OSError, ValueError, json.JSONDecodeError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path}: unreadable artifact: {exc}") from exc
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: header is not a JSON object")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {version!r}, this build reads {FORMAT_VERSION}")
    return header, arrays


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (used to verify downloaded artifacts)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
