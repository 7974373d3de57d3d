"""``churn bench score``: :func:`stream_app.scoring.score_batch` in process, stage by stage, beside each stage's floor.

No broker: the dataset's shipped CSV is replayed as customer events (fresh event ids, as
``churn demo`` replicates them) in micro-batches, scored by the registered champion (and
the ``sales-regressor`` champion as value model when one is registered and its inputs are
among the champion's, as the worker passes it), with ``timings`` on. Each stage's cost per
event is printed beside its floor, the least work that stage cannot avoid, measured on the
same batches in the same run:

decode
    ``orjson.loads`` of every record value.
validate
    The cheapest check that still reads every field of every record once: the set of the
    JSON types of each record's values (no range, length, pattern, blank-rule or time check).
featurise
    The preprocessor on already-built input columns (the text arrays and float columns
    :meth:`~stream_app.contract.EventContract.columns` hands it): the float design matrix alone.
predict
    ``pipeline.model.predict_proba`` on the prepared matrix.
reasons
    ``feature_contributions`` on the alert rows alone (no top-k, no value model).
encode
    ``orjson.dumps`` of every score document, already built as a dict.

Every figure is the median over ``repeats`` passes over all batches, in microseconds per
event (scored or not: per input record). Wall-clock figures depend on what else runs: the
load average is printed at start and end, and the CPU time of the same passes beside the total
(on a shared machine it moves less than the wall clock). Tests never assert them. Like ``churn worker``, the
process first asks glibc's malloc to keep spare heap room and to serve the batches' megabyte
temporaries from it (:func:`plumbing.allocator.keep_heap_room`): without it each batch's
temporaries cost page faults, about 2 to 3 us per event more; the minor page faults per batch of
the timed passes are printed (0 when the setting holds). And like the
worker's fetch loop (:mod:`stream_app.loop`) before its first batch, it collects and freezes the
start-up heap (``gc.freeze()``) once the models and records are loaded, and unfreezes it at the
end: otherwise every full collection walks the imported libraries' objects (about 60 ms each, a
few per pass), about 1.4 us per event of the total that no stage shows and the worker never pays.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

import orjson

from plumbing.allocator import keep_heap_room
from plumbing.settings import Settings
from schemas.namespace import Namespace
from schemas.profiles import DatasetProfile, get_profile
from schemas.registry import CHAMPION
from scratch_models.pipeline import ScoringPipeline
from stream_app.contract import EventContract
from stream_app.scoring import STAGES, LoadedModel, RawRecord, score_batch

#: Records per micro-batch (the worker's ``getmany`` size under load).
BATCH = 500
#: Events replayed per pass.
EVENTS = 20_000
#: Passes over all batches; each figure is the median over them.
REPEATS = 7


@dataclass
class _Prepared:
    """One batch's inputs to each floor, built before any timing."""

    values: list[bytes]
    docs: list[dict[str, Any]]
    columns: dict[str, Any]
    X: Any
    X_alerts: Any
    score_docs: list[dict[str, Any]]


def registered_models(
    settings: Settings, profile: DatasetProfile, dst: Path
) -> tuple[ScoringPipeline, dict[str, str], ScoringPipeline | None, dict[str, str] | None]:
    """The dataset's champion classifier and, when registered, its ``sales-regressor`` champion.

    Downloaded (and SHA-256 verified) from the configured MLflow as the worker does.

    Parameters
    ----------
    settings : Settings
    profile : DatasetProfile
    dst : Path
        Directory to download into.

    Returns
    -------
    classifier : ScoringPipeline
    classifier_names : dict
        ``{"name": ..., "version": ...}``.
    regressor : ScoringPipeline or None
    regressor_names : dict or None

    Raises
    ------
    RuntimeError
        If no champion classifier is registered (``churn batch run`` trains one).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from plumbing.artifacts import download_pipeline, version_artifact_uri

    ns = Namespace.for_dataset(profile.name)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)

    def fetch(name: str, sub: str) -> tuple[ScoringPipeline, dict[str, str]] | None:
        from stream_app.registry_check import NOT_FOUND_CODES

        try:
            mv = client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException as exc:
            if exc.error_code in NOT_FOUND_CODES:
                return None
            raise  # the registry did not answer: a one-line error, not "train one first"
        uri = version_artifact_uri(mv)
        pipeline = download_pipeline(settings.mlflow_tracking_uri, uri, mv.tags["sha256"], dst_dir=dst / sub)
        return pipeline, {"name": name, "version": str(mv.version)}

    champion = fetch(ns.classifier_name, "classifier")
    if champion is None:
        raise RuntimeError(
            f"no {ns.classifier_name}@{CHAMPION} in {settings.mlflow_tracking_uri}: train one first "
            f"(churn batch run --dataset {profile.name}) or pass --pipeline"
        )
    value = fetch(ns.regressor_name, "regressor")
    if value is None:
        return champion[0], champion[1], None, None
    return champion[0], champion[1], value[0], value[1]


def replay_records(
    profile: DatasetProfile, source: str | Path | None, events: int, topic: str | None = None
) -> list[RawRecord]:
    """The dataset's CSV as ``events`` consumed records: its rows cycled, each copy with a fresh ``event_id``.

    Parameters
    ----------
    profile : DatasetProfile
    source : str or Path, optional
        Default: the dataset's shipped file.
    events : int
    topic : str, optional
        Default: the dataset's ``customers`` topic.

    Returns
    -------
    list of RawRecord
        Offsets ``0 .. events - 1`` of partition 0.
    """
    from batch.cycle_input import default_source
    from churn_stream.demo import replicate_events
    from churn_stream.produce import csv_to_customer_events

    base = csv_to_customer_events(default_source(profile.name, source), profile.name)
    topic = topic or Namespace.for_dataset(profile.name).customers
    return [RawRecord(topic, 0, i, k, v) for i, (k, v) in enumerate(replicate_events(base, events))]


def _local(pipeline: ScoringPipeline | str | Path) -> tuple[ScoringPipeline, dict[str, str]]:
    """A pipeline given by the caller and its names: ``local``, the file name as version ("-" in memory)."""
    if isinstance(pipeline, ScoringPipeline):
        return pipeline, {"name": "local", "version": "-"}
    return ScoringPipeline.load(pipeline), {"name": "local", "version": Path(pipeline).name}


def _median_us(seconds: Sequence[float], events: int) -> float:
    return round(statistics.median(seconds) / events * 1e6, 3)


def _prepare(model: LoadedModel, batch: Sequence[RawRecord]) -> _Prepared:
    pipeline = model.pipeline
    values = [r.value for r in batch if r.value is not None]
    decoded = model.contract.decoder.decode(batch)
    columns = model.contract.columns(decoded.rows, pipeline.feature_names_in, decoded.fields, decoded.distinct)
    X = pipeline.transform(columns)
    proba = pipeline.model.predict_proba(X)[:, 1]
    result = score_batch(model, batch)
    return _Prepared(
        values=values,
        docs=[orjson.loads(v) for v in values],
        columns=columns,
        X=X,
        X_alerts=X[proba >= pipeline.threshold],
        score_docs=[orjson.loads(v) for _, v in result.scores],
    )


def _floors(model: LoadedModel, prepared: list[_Prepared]) -> dict[str, Callable[[_Prepared], Any]]:
    pipeline = model.pipeline
    loads, dumps = orjson.loads, orjson.dumps
    contributions = getattr(pipeline.model, "feature_contributions", None)
    floors: dict[str, Callable[[_Prepared], Any]] = {
        "decode": lambda p: list(map(loads, p.values)),
        "validate": lambda p: [set(map(type, d.values())) for d in p.docs],
        "featurise": lambda p: pipeline.preprocessor.transform(p.columns),
        "predict": lambda p: pipeline.model.predict_proba(p.X),
        "encode": lambda p: list(map(dumps, p.score_docs)),
    }
    if contributions is not None:
        floors["reasons"] = lambda p: contributions(p.X_alerts) if len(p.X_alerts) else None
    return floors


def run_bench_score(
    settings: Settings | None = None,
    *,
    dataset: str | Path = "telco",
    source: str | Path | None = None,
    pipeline: ScoringPipeline | str | Path | None = None,
    value_pipeline: ScoringPipeline | str | Path | None = None,
    batch: int = BATCH,
    events: int = EVENTS,
    repeats: int = REPEATS,
    json_path: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time ``score_batch`` per stage beside each stage's floor; print a table and return the figures.

    Parameters
    ----------
    settings : Settings, optional
        The MLflow to take the champions from; needed unless ``pipeline`` is given.
    dataset : str or Path, default "telco"
        A shipped profile's name or a profile file.
    source : str or Path, optional
        CSV whose rows are replayed (default: the dataset's shipped file).
    pipeline : ScoringPipeline or path, optional
        Score with this classifier (a fitted pipeline or a ``.npz``) instead of the
        registered champion; no value model then unless ``value_pipeline`` is given.
    value_pipeline : ScoringPipeline or path, optional
        The value model to pass with ``pipeline``.
    batch : int, default 500
        Records per micro-batch.
    events : int, default 20000
        Records replayed per pass.
    repeats : int, default 7
        Passes; each figure is the median over them.
    json_path : Path, optional
        Where to write the figures as JSON.
    echo : callable, default print
        Where the table goes.

    Returns
    -------
    dict
        ``score_batch_us`` (per event), ``score_batch_cpu_us`` (the process's CPU time per event
        over the same passes: less sensitive to other processes than the wall clock),
        ``stage_us`` and ``floor_us`` (per event, by stage; a floor is None when the model has
        no ``feature_contributions``), ``batch``, ``events``,
        ``load_avg`` (1-minute, ``start`` and ``end``), ``model_name``, ``model_version``,
        ``value_model`` (name and version, or None), ``alerts_fraction``, ``repeats``, ``dataset``,
        ``heap_room`` (the malloc settings took), ``minor_faults_per_batch`` (of the timed passes).

    Raises
    ------
    ValueError
        If ``batch``, ``events`` or ``repeats`` is below 1, or neither ``settings`` nor ``pipeline`` is given.
    """
    if batch < 1 or events < 1 or repeats < 1:
        raise ValueError(f"batch, events, repeats: expected >= 1, got {batch}, {events}, {repeats}")
    profile = get_profile(dataset)
    contract = EventContract.for_profile(profile)
    heap_room = keep_heap_room()  # as ``churn worker`` does
    load_start = os.getloadavg()[0]
    value_names: dict[str, str] | None = None
    if pipeline is None:
        if settings is None:
            raise ValueError("pass settings (the registry's champion) or a pipeline")
        with tempfile.TemporaryDirectory(prefix="churn-bench-score-") as tmp:
            clf, names, reg, value_names = registered_models(settings, profile, Path(tmp))
    else:
        clf, names = _local(pipeline)
        reg = None
        if value_pipeline is not None:
            reg, value_names = _local(value_pipeline)
    model = LoadedModel(clf, names["name"], names["version"], contract)
    value_model = None
    if reg is not None and value_names is not None:
        if set(reg.feature_names_in) <= set(clf.feature_names_in):  # as the worker decides
            value_model = LoadedModel(reg, value_names["name"], value_names["version"], contract)
        else:
            value_names = None
    records = replay_records(profile, source, events)
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]

    for b in batches[: max(1, min(len(batches), 4))]:  # warm-up: allocator, caches, lazy imports
        score_batch(model, b, value_model=value_model)
    gc.collect()  # as the worker's fetch loop does before its first batch
    gc.freeze()
    try:
        alerts = sum(len(score_batch(model, b, value_model=value_model).alerts) for b in batches)
        faults_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        total_s: list[float] = []
        cpu_s: list[float] = []
        stage_s: dict[str, list[float]] = {s: [] for s in STAGES}
        for _ in range(repeats):
            timings: dict[str, float] = {}
            elapsed = 0.0
            cpu0 = process_time()
            for b in batches:
                t0 = perf_counter()
                score_batch(model, b, value_model=value_model, timings=timings)
                elapsed += perf_counter() - t0
            total_s.append(elapsed)
            cpu_s.append(process_time() - cpu0)
            for s in STAGES:
                stage_s[s].append(timings.get(s, 0.0))
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_start) / (repeats * len(batches))

        prepared = [_prepare(model, b) for b in batches]
        floors = _floors(model, prepared)
        floor_s: dict[str, list[float]] = {s: [] for s in floors}
        for _ in range(repeats):
            for s, fn in floors.items():
                t0 = perf_counter()
                for p in prepared:
                    fn(p)
                floor_s[s].append(perf_counter() - t0)
    finally:
        gc.unfreeze()
    load_end = os.getloadavg()[0]

    n = len(records)
    result: dict[str, Any] = {
        "score_batch_us": _median_us(total_s, n),
        "score_batch_cpu_us": _median_us(cpu_s, n),
        "stage_us": {s: _median_us(v, n) for s, v in stage_s.items()},
        "floor_us": {s: (_median_us(floor_s[s], n) if s in floor_s else None) for s in STAGES},
        "batch": batch,
        "events": n,
        "repeats": repeats,
        "dataset": profile.name,
        "alerts_fraction": round(alerts / n, 4),
        "load_avg": {"start": round(load_start, 2), "end": round(load_end, 2)},
        "model_name": names["name"],
        "model_version": names["version"],
        "value_model": value_names,
        "heap_room": heap_room,
        "minor_faults_per_batch": round(faults, 1),
    }
    value = f"{value_names['name']} v{value_names['version']}" if value_names else "none"
    echo(
        f"# churn bench score: {profile.name}, {names['name']} v{names['version']} (value model: {value}), "
        f"{n} events in batches of {batch}, alerts {result['alerts_fraction']:.1%}, median of {repeats}; "
        f"malloc top pad {'on' if heap_room else 'unavailable'}, start-up heap frozen, "
        f"{faults:.1f} page faults per batch; "
        f"cores={os.cpu_count()} load_avg={load_start:.2f} -> {load_end:.2f}"
    )
    echo(f"{'stage':<10} {'us/event':>9} {'floor':>9}")
    for s in STAGES:
        floor = result["floor_us"][s]
        echo(f"{s:<10} {result['stage_us'][s]:>9.2f} {'-' if floor is None else f'{floor:.2f}':>9}")
    echo(f"{'score_batch':<10} {result['score_batch_us']:>8.2f}")
    echo(f"{'(cpu time)':<10} {result['score_batch_cpu_us']:>9.2f}")
    if json_path is not None:
        Path(json_path).write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return result
