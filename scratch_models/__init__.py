"""From-scratch numpy models with scikit-learn's estimator contract.

Every model's logic is numpy only; scikit-learn and xgboost appear in tests and
benchmarks as references, never here.
"""

from scratch_models.base import BaseModel, NotFittedError
from scratch_models.linear import LogisticRegression
from scratch_models.persistence import ArtifactError
from scratch_models.pipeline import ScoringPipeline
from scratch_models.preprocessing import TabularPreprocessor
from scratch_models.registry import MODEL_CLASSES, load_model

__all__ = [
    "ArtifactError",
    "BaseModel",
    "LogisticRegression",
    "MODEL_CLASSES",
    "NotFittedError",
    "ScoringPipeline",
    "TabularPreprocessor",
    "load_model",
]
