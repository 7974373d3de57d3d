"""Fixtures shared by the scoring path's tests: the Telco frame, its events and three served models."""

from __future__ import annotations

import pandas as pd
import pytest

from batch.features import classification_data
from batch.ingest import read_source_csv
from churn_stream.produce import csv_to_customer_events
from schemas.profiles import TELCO
from scratch_models import LogisticRegression, ScoringPipeline
from scratch_models.boosting import GradientBoostingClassifier
from stream_app.model_store import CLASSIFIER_NAME
from stream_app.scoring import LoadedModel


@pytest.fixture(scope="module")
def frame(telco_csv) -> pd.DataFrame:
    return read_source_csv(telco_csv, TELCO)


@pytest.fixture(scope="module")
def pipeline(frame) -> ScoringPipeline:
    data = classification_data(frame, TELCO)
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    return ScoringPipeline(data.preprocessor, model, threshold=0.5, metadata={"dataset": "telco"})


@pytest.fixture(scope="module")
def loaded(pipeline) -> LoadedModel:
    return LoadedModel(pipeline, CLASSIFIER_NAME, "3")


@pytest.fixture(scope="module")
def events(telco_csv) -> list[tuple[bytes, bytes]]:
    return csv_to_customer_events(telco_csv, limit=200)  # test_scoring.N


@pytest.fixture(scope="module")
def boosted(frame) -> LoadedModel:
    data = classification_data(frame, TELCO)
    model = GradientBoostingClassifier(n_estimators=40, min_child_weight=60.0, random_state=0)
    return LoadedModel(
        ScoringPipeline(data.preprocessor, model.fit(data.X_train, data.y_train), threshold=0.3), CLASSIFIER_NAME, "5"
    )
