"""Name -> class lookup used by persistence (artifacts name a class; only known ones load).

Model classes register themselves when their module is imported
(``BaseModel.__init_subclass__``); this module imports every model module so the
registry is complete. Add new model modules to ``_MODEL_MODULES``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from scratch_models import persistence
from scratch_models.base import BaseModel

_MODEL_MODULES = [
    "scratch_models.linear",
    "scratch_models.tree",
    "scratch_models.forest",
    "scratch_models.boosting",
    "scratch_models.svm",
    "scratch_models.naive_bayes",
    "scratch_models.regression",
    "scratch_models.decomposition",
    "scratch_models.cluster",
    "scratch_models.neural",
    "scratch_models.composite",
]

for _name in _MODEL_MODULES:
    importlib.import_module(_name)

#: Every loadable model class by its class name.
MODEL_CLASSES: dict[str, type[BaseModel]] = BaseModel.registry


def model_from_parts(header: dict, arrays: dict) -> BaseModel:
    """Instantiate the class named in ``header`` from its saved state.

    Raises
    ------
    persistence.ArtifactError
        If the class is unknown.
    """
    name = header.get("class")
    if name not in MODEL_CLASSES:
        raise persistence.ArtifactError(f"unknown model class {name!r} in artifact")
    return MODEL_CLASSES[name]._from_parts(header, arrays)


def load_model(path: str | Path) -> BaseModel:
    """Load any scratch model saved with ``save``, whatever its class."""
    header, arrays = persistence.load_npz(path)
    return model_from_parts(header, arrays)
