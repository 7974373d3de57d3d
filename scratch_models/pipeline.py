"""The scoring artifact: preprocessor + model + decision threshold in one ``.npz``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scratch_models import persistence
from scratch_models.base import BaseModel
from scratch_models.preprocessing import TabularPreprocessor
from scratch_models.registry import model_from_parts


class ScoringPipeline:
    """What a worker loads to score: featurisation, model and threshold together.

    Parameters
    ----------
    preprocessor : TabularPreprocessor
        Fitted.
    model : BaseModel
        Fitted on ``preprocessor``'s output.
    threshold : float, default 0.5
        Probability at or above which a customer is labelled churn and alerted.
    metadata : dict, optional
        JSON-serialisable facts carried along (dataset, training metrics, ...).
    """

    def __init__(
        self,
        preprocessor: TabularPreprocessor,
        model: BaseModel,
        threshold: float = 0.5,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.preprocessor = preprocessor
        self.model = model
        self.threshold = float(threshold)
        self.metadata = dict(metadata or {})

    @property
    def feature_names_in(self) -> list[str]:
        """Raw input columns the pipeline needs, in the saved order."""
        return self.preprocessor.feature_names_in_

    @property
    def feature_names_out(self) -> list[str]:
        """Model feature order (after encoding)."""
        return self.preprocessor.feature_names_out_

    def transform(self, columns: Mapping[str, Any], codes: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Design matrix, shape (n_samples, n_features_out), float64.

        ``codes``: known category indices of some categorical columns
        (:meth:`TabularPreprocessor.transform`).
        """
        return self.preprocessor.transform(columns, codes=codes)

    def predict_proba(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Positive-class probability per row, shape (n_samples,), float64."""
        return self.model.predict_proba(self.transform(columns))[:, 1]

    def predict(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Regression output per row, shape (n_samples,), float64 (regressors)."""
        return self.model.predict(self.transform(columns))

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` holding preprocessor and model arrays plus a JSON header."""
        pre_meta, pre_arrays = self.preprocessor.get_state()
        model_meta, model_arrays = self.model._get_state()
        header = {
            "kind": "scoring_pipeline",
            "threshold": self.threshold,
            "metadata": self.metadata,
            "task": self.model.task,
            "feature_names_in": self.feature_names_in,
            "feature_names_out": self.feature_names_out,
            "preprocessor": pre_meta,
            "model": {
                "class": type(self.model).__name__,
                "params": self.model.get_params(),
                "state": model_meta,
            },
        }
        arrays = {f"pre/{k}": v for k, v in pre_arrays.items()}
        arrays.update({f"model/{k}": v for k, v in model_arrays.items()})
        return persistence.save_npz(path, header, arrays)

    @classmethod
    def load(cls, path: str | Path) -> ScoringPipeline:
        """Read a pipeline written by :meth:`save`.

        Raises
        ------
        persistence.ArtifactError
            If the file is not a scoring pipeline or names an unknown model class.
        """
        header, arrays = persistence.load_npz(path)
        if header.get("kind") != "scoring_pipeline":
            raise persistence.ArtifactError(f"{path}: not a scoring pipeline artifact")
        pre = TabularPreprocessor.from_state(
            header["preprocessor"],
            {k[4:]: v for k, v in arrays.items() if k.startswith("pre/")},
        )
        model = model_from_parts(header["model"], {k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
        return cls(pre, model, header["threshold"], header.get("metadata"))
