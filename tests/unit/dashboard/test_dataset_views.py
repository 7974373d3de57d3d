"""The dashboard's views derive from the served data set's profile (issue 14, point 5).

``churn dashboard --dataset NAME|PROFILE.yaml`` (or ``CHURN_DATASET``) reads that data set's
scores and alerts topics, samples its scoring group's lag, shows its registered models and
generates the score form from its contract. Telco keeps its historical names.
"""

from __future__ import annotations

import types

import orjson
from dash import html

from dashboard.app import create_app
from dashboard.buffers import LiveBuffers
from dashboard.live import LiveFeed
from dashboard.score_form import ENVELOPE_FIELDS, INTEGER, customer_form_fields
from dashboard.tab_models import layout as models_layout
from dashboard.tab_models import models_outputs
from dashboard.tracking import ModelsReader
from plumbing.settings import Settings
from schemas.events import customer_input_model
from schemas.namespace import Namespace
from schemas.profiles import get_profile


class _Registry:
    """An MLflow client that knows a champion only under the names it was given."""

    def __init__(self, champions: dict[str, str]) -> None:
        self.champions = champions
        self.asked: list[str] = []

    def get_registered_model(self, name):
        from mlflow.exceptions import MlflowException

        self.asked.append(name)
        if name not in self.champions:
            raise MlflowException(f"no model {name}")
        return types.SimpleNamespace(aliases={"champion": self.champions[name]})

    def get_model_version(self, name, version):
        return types.SimpleNamespace(run_id=f"run-{name}", tags={"model": "logistic_regression"})

    def get_run(self, run_id):
        return types.SimpleNamespace(data=types.SimpleNamespace(metrics={"roc_auc": 0.9}))

    def list_artifacts(self, run_id, path=None):
        return []

    def get_experiment_by_name(self, name):
        return None

    def search_model_versions(self, query, max_results=1000):
        return []


def test_the_live_feed_reads_the_datasets_topics_and_its_scoring_groups_lag():
    retail = LiveFeed(Settings(dataset="retail"))
    assert retail.topics == ("retail.churn-scores", "retail.churn-alerts")
    assert retail.customers_topic == "retail.customers"
    assert retail.consumer_group == "churn-scorer-retail"
    telco = LiveFeed(Settings(topic_suffix="-bench"))
    assert telco.topics == ("churn-scores-bench", "churn-alerts-bench")
    assert telco.consumer_group == "churn-scorer"


def test_the_feed_routes_another_datasets_alerts_as_alerts():
    b = LiveBuffers()
    alert = orjson.dumps({"event_id": "e1", "customer_id": "c1", "churn_probability": 0.9, "reasons": []})
    b.add_record("retail.churn-alerts", alert, alert=True)
    b.add_record("retail.churn-scores", alert, alert=False)
    snap = b.snapshot()
    assert len(snap.alerts) == 1 and len(snap.scores) == 1


def test_the_models_views_read_the_datasets_registered_names():
    ns = Namespace.for_dataset("retail")
    registry = _Registry({ns.classifier_name: "4"})
    reader = ModelsReader(registry, dataset="retail", ttl_s=0.0)
    assert reader.experiment == "churn-retail"
    assert reader.classifier_name == "retail-churn-classifier"
    assert reader.aliases() == {"retail-churn-classifier": {"champion": "4"}}
    assert set(registry.asked) == {"retail-churn-classifier", "retail-sales-regressor"}
    assert reader.champion_evaluation()["version"] == "4"
    champ = models_outputs(reader)[3]
    assert "retail-churn-classifier v4" in str(champ)
    # Telco's champion is not retail's: a Telco reader on the same registry sees none.
    assert ModelsReader(registry, ttl_s=0.0).champion_evaluation() == {}
    heading = [c for c in models_layout(reader.classifier_name).children if isinstance(c, html.H3)][1]
    assert heading.children == "Champion evaluation (retail-churn-classifier)"


def test_the_score_form_is_the_datasets_contract(tmp_path):
    profile = get_profile("retail")
    fields = customer_form_fields(hidden={profile.classification_target}, profile=profile)
    schema = customer_input_model(profile).model_json_schema()
    expected = [n for n in schema["properties"] if n not in ENVELOPE_FIELDS | {profile.classification_target}]
    assert [f.name for f in fields] == expected
    assert "tenure_months" not in expected  # not Telco's form
    assert any(f.kind == INTEGER for f in fields)


def test_create_app_serves_the_dataset_named_by_settings_or_argument():
    registry = _Registry({})

    def names(app):
        return app.live_feed.topics, app.models_reader.classifier_name, str(app.layout())

    feed_topics, classifier, page = names(
        create_app(Settings(dataset="retail"), tracker=registry, start_feed=False, api_url="http://x/api/predict")
    )
    assert feed_topics == ("retail.churn-scores", "retail.churn-alerts")
    assert classifier == "retail-churn-classifier"
    assert "form-membership_years" in page and "form-tenure_months" not in page
    feed_topics, classifier, _ = names(
        create_app(Settings(), tracker=registry, start_feed=False, dataset="retail", api_url="http://x/api/predict")
    )
    assert classifier == "retail-churn-classifier" and feed_topics[0] == "retail.churn-scores"
    feed_topics, classifier, page = names(create_app(Settings(), tracker=registry, start_feed=False))
    assert feed_topics == ("churn-scores", "churn-alerts") and classifier == "churn-classifier"
    assert "form-tenure_months" in page
