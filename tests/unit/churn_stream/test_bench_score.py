"""``churn bench score`` on a locally fitted pipeline: every figure is there, positive and finite (never a speed)."""

from __future__ import annotations

import math

import orjson

from batch.features import classification_data, regression_data
from batch.ingest import read_source_csv
from churn_stream.bench.score import run_bench_score
from schemas.profiles import TELCO
from scratch_models import ScoringPipeline
from scratch_models.boosting import GradientBoostingClassifier
from scratch_models.regression import PolynomialRegression
from stream_app.scoring import STAGES


def test_bench_score_reports_every_stage_and_floor(telco_csv, tmp_path):
    frame = read_source_csv(telco_csv, TELCO)
    data = classification_data(frame, TELCO)
    model = GradientBoostingClassifier(n_estimators=20, min_child_weight=60.0, random_state=0)
    classifier = ScoringPipeline(data.preprocessor, model.fit(data.X_train, data.y_train), threshold=0.3)
    path = classifier.save(tmp_path / "classifier.npz")
    value = regression_data(frame, TELCO)
    regressor = ScoringPipeline(value.preprocessor, PolynomialRegression().fit(value.X_train, value.y_train))
    lines: list[str] = []
    out = tmp_path / "score.json"

    result = run_bench_score(
        pipeline=path, value_pipeline=regressor, batch=200, events=500, repeats=2, json_path=out, echo=lines.append
    )

    assert orjson.loads(out.read_text()) == result
    assert result["batch"] == 200 and result["events"] == 500 and result["repeats"] == 2
    assert result["model_name"] == "local" and result["model_version"] == "classifier.npz"
    assert result["value_model"] == {"name": "local", "version": "-"}
    assert set(result["stage_us"]) == set(result["floor_us"]) == set(STAGES)
    figures = [result["score_batch_us"], result["score_batch_cpu_us"], *result["stage_us"].values()]
    figures += [*result["floor_us"].values()]
    assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in figures), result
    assert 0 < result["alerts_fraction"] < 1
    assert set(result["load_avg"]) == {"start", "end"}
    assert any("score_batch" in line for line in lines) and any(line.startswith("reasons") for line in lines)
