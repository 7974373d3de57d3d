"""Prometheus and Grafana for the workers' metrics (deploy/monitoring/, docker-compose.yaml).

The metric names, types and labels come from the code: the collectors of
:class:`stream_app.metrics.WorkerMetrics`, the registry a worker's ``/metrics`` renders.
Every PromQL expression of the dashboard is parsed (``promql-parser``) and may only select
series that registry exports, group and match on labels they carry, and name those labels in
its legend. The compose wiring is checked too: Prometheus scrapes the worker service on its
web port, Grafana's data source is that Prometheus, and the dashboard is mounted where the
provider looks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from plumbing.settings import Settings
from stream_app.metrics import BulkHistogram, WorkerMetrics
from tests.unit.test_compose import _INTERPOLATION, SECRET_NAME, _compose_raw

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "churn-worker.json"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"

#: Labels Prometheus attaches to every scraped series, and the series it makes per target.
TARGET_LABELS = {"job", "instance"}
SYNTHETIC_SERIES = {"up": set()}

#: Exposed sample names per metric type (Prometheus text format, as prometheus_client writes it).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}

#: Grafana's variables, replaced by values PromQL accepts before parsing.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$job": ".*", "$instance": ".*"}


# ---------------------------------------------------------- what the code exports
def _exported() -> dict[str, set[str]]:
    """Every series name a worker's /metrics can carry, with its labels (``le`` for buckets)."""
    metrics = WorkerMetrics()
    series: dict[str, set[str]] = {}
    collectors = [c for c in vars(metrics).values() if isinstance(c, MetricWrapperBase | BulkHistogram)]
    registered = {family.name for family in metrics.registry.collect()}
    for collector in collectors:
        if isinstance(collector, BulkHistogram):
            name, kind, labels = collector.name, "histogram", set()
        else:
            name, kind, labels = collector._name, collector._type, set(collector._labelnames)
        assert name in registered, f"{name} is not in the worker's registry"
        for suffix in _SUFFIXES[kind]:
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    assert len(collectors) == len(registered), "a registered metric is not an attribute of WorkerMetrics"
    return series


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _targets() -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in _panels() for t in p["targets"]]


def _parse(expr: str):
    for variable in sorted(_GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, _GRAFANA_VARIABLES[variable])
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return promql_parser.parse(expr)


def _selectors_and_labels(expr: str) -> tuple[set[str], set[str], set[str]]:
    """Series names selected, labels used (matchers, by/on), labels created (count_values)."""
    names: set[str] = set()
    used: set[str] = set()
    created: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"select series by name, not by __name__ matchers: {expr}"
            names.add(node.name)
            used.update(m.name for m in node.matchers.matchers)
        elif isinstance(node, promql_parser.AggregateExpr):
            if node.modifier is not None:
                used.update(node.modifier.labels)
            if isinstance(node.param, promql_parser.StringLiteral):
                created.add(node.param.val)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                used.update(node.modifier.matching.labels)

    promql_parser.walk(_parse(expr), visit, None)
    return names, used, created


# ------------------------------------------------------------------ the dashboard
def test_dashboard_is_grafana_json():
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what it shows"
        assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


@pytest.mark.parametrize(("title", "target"), _targets(), ids=lambda v: v if isinstance(v, str) else v["refId"])
def test_expression_selects_only_what_the_worker_exports(title, target):
    exported = _exported() | SYNTHETIC_SERIES
    names, used, created = _selectors_and_labels(target["expr"])
    unknown = names - set(exported)
    assert not unknown, f"{title}: {sorted(unknown)} are not exported by stream_app.metrics.WorkerMetrics"
    labels = TARGET_LABELS | created | set().union(*(exported[n] for n in names))
    assert used <= labels, f"{title}: labels {sorted(used - labels)} are on none of {sorted(names)}"
    legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    assert legend <= labels, f"{title}: legend names {sorted(legend - labels)}"


def test_variable_queries_select_exported_series():
    exported = _exported()
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+)(?:\{.*\})?,\s*(\w+)\)", variable["query"]["query"])
            assert m, variable["query"]["query"]
            assert m.group(1) in exported and m.group(2) in TARGET_LABELS | exported[m.group(1)]


def test_the_check_rejects_a_misspelt_metric_and_label():
    exported = _exported()
    names, used, _ = _selectors_and_labels(
        'sum by (stagee) (rate(churn_dead_letter_total{job=~"$job"}[$__rate_interval]))'
    )
    assert names - set(exported) == {"churn_dead_letter_total"}
    assert "stagee" not in exported["churn_dead_letters_total"] and "stagee" in used
    with pytest.raises(Exception):  # noqa: B017 - the parser's own error type
        _parse("sum(rate(churn_events_in_total[$__rate_interval])")


def test_dashboard_covers_the_worker_metrics():
    metrics = WorkerMetrics()
    used = set().union(*(_selectors_and_labels(t["expr"])[0] for _, t in _targets()))
    required = {
        metrics.events_in._name + "_total": "throughput in",
        metrics.events_out._name + "_total": "throughput out",
        metrics.consumer_lag._name: "lag per partition",
        metrics.scoring_seconds.name + "_bucket": "scoring latency quantiles",
        metrics.end_to_end_seconds.name + "_bucket": "end-to-end latency quantiles",
        metrics.dead_letters._name + "_total": "dead letters by stage",
        metrics.model_version._name: "model version",
        metrics.feature_psi._name: "PSI per feature",
        metrics.reloads._name + "_total": "reloads",
    }
    missing = [what for name, what in required.items() if name not in used]
    assert not missing, f"no panel shows: {missing}"
    quantile_exprs = [t["expr"] for _, t in _targets() if "histogram_quantile" in t["expr"]]
    for histogram in (metrics.scoring_seconds.name, metrics.end_to_end_seconds.name):
        assert any(f"{histogram}_bucket" in e for e in quantile_exprs), f"{histogram}: shown as quantiles"
    by_partition = [t["expr"] for _, t in _targets() if metrics.consumer_lag._name in t["expr"]]
    assert any("partition" in _selectors_and_labels(e)[1] for e in by_partition)


# ------------------------------------------------------------- compose wiring
def _compose() -> dict[str, Any]:
    return _compose_raw()


def _config_target(service: dict[str, Any], source: str) -> str:
    (target,) = [c["target"] for c in service.get("configs") or [] if c["source"] == source]
    return target


def test_prometheus_scrapes_every_worker_on_its_web_port():
    compose = _compose()
    worker_env = compose["services"]["worker"]["environment"]
    port = Settings.from_env({"CHURN_WORKER_WEB_PORT": str(worker_env["CHURN_WORKER_WEB_PORT"])}).worker_web_port
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A" and sd["port"] == port
    # The worker serves that path (a Faust page) and listens beyond loopback in compose.
    pages = {m for f in (REPO / "stream_app").glob("*.py") for m in re.findall(r'page\("(/[^"]*)"\)', f.read_text())}
    assert {"/metrics", "/health"} <= pages
    assert worker_env["WEB_BIND"] == "0.0.0.0"
    prometheus = compose["services"]["prometheus"]
    assert _config_target(prometheus, "prometheus-config") == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_grafana_reads_that_prometheus_and_the_dashboard():
    compose = _compose()
    grafana = compose["services"]["grafana"]
    datasources = yaml.safe_load((MONITORING / "grafana" / "datasources.yaml").read_text())["datasources"]
    (source,) = datasources
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus" and url.hostname == "prometheus"
    assert any(str(p).endswith(f":{url.port}") for p in compose["services"]["prometheus"]["ports"])
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    (provider,) = yaml.safe_load((MONITORING / "grafana" / "dashboards.yaml").read_text())["providers"]
    target = _config_target(grafana, "grafana-dashboard-churn-worker")
    assert str(Path(target).parent) == provider["options"]["path"]
    assert Path(target).name == DASHBOARD.name
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == target
    assert _config_target(grafana, "grafana-datasources").startswith("/etc/grafana/provisioning/datasources/")
    assert _config_target(grafana, "grafana-dashboard-provider").startswith("/etc/grafana/provisioning/dashboards/")
    # Every dashboard in the folder is mounted.
    mounted = {Path(compose["configs"][c["source"]]["file"]).name for c in grafana["configs"]}
    assert {p.name for p in (MONITORING / "grafana").glob("*.json")} <= mounted


def test_compose_configs_are_files_of_the_repository_or_inline_without_a_credential():
    compose = _compose()
    declared = compose.get("configs") or {}
    used = {c["source"] for svc in compose["services"].values() for c in svc.get("configs") or []}
    assert used == set(declared), f"unused: {set(declared) - used}; undeclared: {used - set(declared)}"
    for name, config in declared.items():
        assert set(config) in ({"file"}, {"content"}), f"{name}: a repository file or inline content"
        if "file" in config:
            path = (REPO / config["file"]).resolve()
            assert path.is_file() and REPO in path.parents, f"{name}: {config['file']}"
            continue
        # Inline (MLflow's auth.ini, whose database URL holds PostgreSQL's password): every value
        # comes from a required variable of .env, none is written here or falls back to a default.
        refs = [m for m in _INTERPOLATION.finditer(config["content"]) if m.group("name")]
        assert refs and all(m.group("op") in (":?", "?") for m in refs), f"{name}: {[m.group(0) for m in refs]}"
        credentials = [m for m in refs if SECRET_NAME.search(m.group("name"))]
        assert credentials, f"{name}: inline content without a credential belongs in a file"
