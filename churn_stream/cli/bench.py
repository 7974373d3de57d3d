"""``churn bench``: ours and the reference, measured side by side in one run."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from churn_stream.cli.app import DATASET, OUTPUT_FILE, RATE, chosen_dataset, dataset_option, main, tool_output
from plumbing.settings import Settings

#: ``--json FILE`` of every bench command.
JSON_OUTPUT = click.option(
    "--json",
    "json_path",
    type=OUTPUT_FILE,
    default=None,
    help="Also write the figures to FILE, as one JSON object.",
)


# --------------------------------------------------------------------- bench
@main.group()
def bench() -> None:
    """Benchmarks: ours and the reference, measured side by side in one run."""
    tool_output()  # reports, progress and warnings; INFO logs (batch.ingest, MLflow's waits) with -v


@bench.command("models")
@dataset_option()
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV to read (default: the dataset's shipped file; only telco ships one).",
)
@JSON_OUTPUT
@click.pass_obj
def bench_models(settings: Settings, dataset: str | None, source: Path | None, json_path: Path | None) -> None:
    """Scratch models vs scikit-learn/xgboost: quality, fit and predict time."""
    from churn_stream.bench.models import run_bench_models
    from churn_stream.cli.batch import _require_source

    profile = chosen_dataset(settings, dataset)
    _require_source(profile.name, source)
    chosen = dataset if dataset is not None else settings.dataset
    run_bench_models(dataset=chosen, json_path=json_path, source=source)


@bench.command("fit")
@click.option("--rows", type=click.IntRange(min=100), default=1_000_000, show_default=True)
@click.option("--features", type=click.IntRange(min=8), default=80, show_default=True)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Choice(["gradient_boosting", "random_forest", "random_forest_pca"]),
    help="Repeatable; default all three.",
)
@click.option(
    "--reference-rows",
    type=click.IntRange(min=100),
    default=100_000,
    show_default=True,
    help="Rows the scikit-learn forest references are fitted on (xgboost gets --rows).",
)
@JSON_OUTPUT
def bench_fit(rows: int, features: int, models: tuple[str, ...], reference_rows: int, json_path: Path | None) -> None:
    """Boosting and forests at scale: fit s, CPU s, peak RSS beside the target and a reference."""
    from churn_stream.bench.fit_scale import SCALE_MODELS, run_bench_fit

    run_bench_fit(rows, features, models or SCALE_MODELS, reference_rows, json_path)


@bench.command("gbm-cv")
@JSON_OUTPUT
def bench_gbm_cv(json_path: Path | None) -> None:
    """Cross-validate the zoo's gradient-boosting hyperparameters on Telco's training part only."""
    from churn_stream.bench.model_selection import select_gbm_params

    rows = select_gbm_params()
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=1) + "\n")


@bench.command("models-cv")
@click.option(
    "--model",
    "models",
    multiple=True,
    default=("gradient_boosting",),
    show_default=True,
    help="Zoo classifier, repeatable.",
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=2, show_default=True, help="Repetitions of the 5 outer folds."
)
@JSON_OUTPUT
def bench_models_cv(models: tuple[str, ...], repeats: int, json_path: Path | None) -> None:
    """Scratch classifiers beside their references on repeated outer folds of Telco's training part
    (thresholds tuned out of fold inside each), with the paired difference and its standard error."""
    from churn_stream.bench.model_selection import format_nested_cv, nested_cv

    load = os.getloadavg()
    try:
        rows = nested_cv(tuple(models), outer_seeds=tuple(range(7, 7 + repeats)))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    click.echo(f"# churn bench models-cv: cores={os.cpu_count()} load_avg={load[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    click.echo(format_nested_cv(rows))
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=1) + "\n")


@bench.command("stream")
@click.option("--events", type=click.IntRange(min=1), default=200_000, show_default=True)
@dataset_option(
    "Dataset: a shipped profile's name or a profile file (default: CHURN_DATASET); the naive and "
    "relay contenders speak Telco's contract, so other datasets measure the worker alone"
)
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV whose rows are replayed (default: the dataset's shipped file).",
)
@click.option(
    "--contenders",
    default=None,
    help="Comma-separated subset of naive,relay,librdkafka,quix,worker,worker2 (default: all; quix only "
    "with --quix-python).",
)
@click.option(
    "--quix-python",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Python of a virtualenv with quixstreams, numpy, orjson and pyyaml: adds the Quix Streams contender.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1.0),
    default=2000.0,
    show_default=True,
    help="Events/s of the latency phase: the pass-through (the broker's floor, forwarding events unchanged with "
    "the worker's client settings), the librdkafka relay and the worker, each on fresh topics.",
)
@click.option(
    "--latency-s",
    type=click.FloatRange(min=0.0),
    default=20.0,
    show_default=True,
    help="Seconds of the latency phase per contender (0 skips it, and the hot reloads with it).",
)
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    help="While the worker contender's latency phase runs, move the data set's champion alias in the registry "
    "to a copy of its version and back, announcing both (every worker of that data set on this stack reloads), "
    "and time each hot reload (the worker's latency figures then include both reloads); the copy is deleted "
    "after, and a run that was killed is repaired by the next one (one still going makes the next stop with an "
    "error instead). "
    "--no-reload leaves the registry alone.",
)
@JSON_OUTPUT
@click.pass_obj
def bench_stream(
    settings: Settings,
    events: int,
    dataset: str | None,
    source: Path | None,
    contenders: str | None,
    quix_python: str | None,
    rate: float,
    latency_s: float,
    reload: bool,
    json_path: Path | None,
) -> None:
    """Naive Faust agent, aiokafka and librdkafka relays, Quix Streams, our worker (one and two):
    end to end on the configured broker, each worker stage beside its floor, and the worker's latency
    beside the librdkafka relay's and a pass-through's (the broker's floor) on fresh topics."""
    from churn_stream.bench.stream import chosen_contenders, run_bench_stream
    from churn_stream.bench.stream_phases import ContenderFailed
    from churn_stream.bench.stream_reload import SwapInProgress
    from churn_stream.cli.batch import _require_source

    profile = chosen_dataset(settings, dataset)
    _require_source(profile.name, source)
    chosen = dataset if dataset is not None else settings.dataset
    names = None if contenders is None else [n.strip() for n in contenders.split(",") if n.strip()]
    try:
        chosen_contenders(names, quix_python, profile.name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--contenders") from None

    signals = [signal.SIGINT]  # Ctrl-C unless a SIGTERM came

    def interrupted(signum: int, frame: object) -> None:
        signals[0] = signal.Signals(signum)
        raise KeyboardInterrupt  # like Ctrl-C: the champion swap is undone and the contenders stopped

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        run_bench_stream(
            settings,
            events=events,
            json_path=json_path,
            dataset=chosen,
            source=source,
            contenders=names,
            quix_python=quix_python,
            rate=rate,
            latency_s=latency_s,
            reload=reload,
        )
    except (SwapInProgress, ContenderFailed) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        # The shell's convention for a command a signal ended: 128 + its number (130 for Ctrl-C).
        click.echo("\nAborted!", err=True)  # as click says it, after the ^C on the terminal
        raise click.exceptions.Exit(128 + signals[0]) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@bench.command("score")
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True, help="Records per micro-batch.")
@click.option(
    "--events", type=click.IntRange(min=1), default=20_000, show_default=True, help="Records replayed per pass."
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=7, show_default=True, help="Passes; figures are their median."
)
@dataset_option()
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV whose rows are replayed (default: the dataset's shipped file).",
)
@click.option(
    "--pipeline",
    "pipeline_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A scoring pipeline .npz to score with instead of the registered champion (no value model then).",
)
@JSON_OUTPUT
@click.pass_obj
def bench_score(
    settings: Settings,
    batch: int,
    events: int,
    repeats: int,
    dataset: str | None,
    source: Path | None,
    pipeline_path: Path | None,
    json_path: Path | None,
) -> None:
    """score_batch in process (no broker), per stage in us/event beside each stage's floor, with the
    registered champion (and sales-regressor champion as value model) on the dataset's replayed CSV."""
    from churn_stream.bench.score import run_bench_score
    from churn_stream.cli.batch import _require_source

    profile = chosen_dataset(settings, dataset)
    _require_source(profile.name, source)
    chosen = dataset if dataset is not None else settings.dataset
    try:
        run_bench_score(
            settings,
            dataset=chosen,
            source=source,
            pipeline=pipeline_path,
            batch=batch,
            events=events,
            repeats=repeats,
            json_path=json_path,
            echo=click.echo,
        )
    except RuntimeError as err:
        raise click.ClickException(str(err)) from None


@bench.command("api")
@click.option("--rate", type=click.FloatRange(min=1), default=500.0, show_default=True, help="Requests per second.")
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="Seconds of the measured run.",
)
@JSON_OUTPUT
@click.pass_obj
def bench_api(settings: Settings, rate: float, duration_s: float, json_path: Path | None) -> None:
    """Single-customer prediction latency at a fixed request rate, beside a scikit-learn Pipeline call."""
    from churn_stream.bench.api import run_bench_api

    run_bench_api(settings, json_path=json_path, rate=rate, duration_s=duration_s)


@bench.command("dashboard")
@click.option("--duration", "duration_s", type=float, default=3600.0, show_default=True, help="Seconds.")
@click.option("--rate", type=RATE, default=2000.0, show_default=True, help="Score records per second.")
@JSON_OUTPUT
@click.pass_obj
def bench_dashboard(settings: Settings, duration_s: float, rate: float, json_path: Path | None) -> None:
    """Soak the dashboard: scores produced at --rate; its memory, callback durations vs refresh
    intervals and live counts; exit 1 if memory grew, a callback overran its interval or the page stalled."""
    from churn_stream.bench.dashboard import run_bench_dashboard

    try:
        result = run_bench_dashboard(settings, duration_s=duration_s, rate=rate, json_path=json_path)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    if not result["passed"]:
        sys.exit(1)


@bench.command("batch")
@click.option(
    "--dataset",
    type=DATASET,
    default="retail",
    show_default=True,
    help="A shipped profile's name or a profile file (targets are stated for retail and telco).",
)
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Retail customers to generate (deterministic seed) when no --source is given.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated retail file.")
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV to ingest instead (default: generated retail rows, or the shipped Telco file).",
)
@JSON_OUTPUT
@click.option(
    "--only",
    "only",
    multiple=True,
    help="Train only this zoo model (repeatable; quick checks, not a full-cycle figure).",
)
@click.pass_obj
def bench_batch(
    settings: Settings,
    dataset: str,
    rows: int,
    seed: int,
    source: Path | None,
    json_path: Path | None,
    only: tuple[str, ...],
) -> None:
    """One full batch cycle on the configured stack: seconds per stage and model, peak memory, beside the
    targets (retail 1M rows < 15 min and < 6 GB; Telco < 90 s)."""
    from churn_stream.bench.batch import run_bench_batch
    from churn_stream.cli.batch import _require_source
    from plumbing.clients import load_dataset

    name = load_dataset(dataset).name
    if name != "retail":  # retail's source is generated
        _require_source(name, source)

    run_bench_batch(
        settings,
        dataset=dataset,
        rows=rows,
        seed=seed,
        source=source,
        json_path=json_path,
        only=set(only) or None,
        echo=click.echo,
    )


@bench.command("batch-curve")
@click.option(
    "--rows",
    type=click.IntRange(min=1000),
    default=600_000,
    show_default=True,
    help="Retail customers to generate (80 % train, 20 % hold-out).",
)
@click.option(
    "--sizes",
    default="50000,100000,200000,400000",
    show_default=True,
    help="Comma-separated training-row caps to fit each ensemble on.",
)
@click.option("--model", "models", multiple=True, help="Only this ensemble (repeatable; default all four).")
@click.option("--seed", type=int, default=0, show_default=True)
@JSON_OUTPUT
@click.pass_obj
def bench_batch_curve(
    settings: Settings, rows: int, sizes: str, models: tuple[str, ...], seed: int, json_path: Path | None
) -> None:
    """Learning curve of the tree ensembles on retail: hold-out AUC / R^2 and fit seconds per training-row
    cap (the evidence for CHURN_BATCH_ENSEMBLE_MAX_ROWS). Needs no stack."""
    from churn_stream.bench.batch import run_ensemble_curve

    try:
        caps = tuple(int(s) for s in sizes.split(",") if s.strip())
        run_ensemble_curve(
            settings, rows=rows, sizes=caps, seed=seed, models=models or None, json_path=json_path, echo=click.echo
        )
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@bench.command("faults")
@click.option("--events", type=click.IntRange(min=1), default=10_000, show_default=True, help="Records per scenario.")
@JSON_OUTPUT
@click.option("--only", "only", multiple=True, help="Run only this scenario (repeatable).")
@click.pass_obj
def bench_faults(settings: Settings, events: int, json_path: Path | None, only: tuple[str, ...]) -> None:
    """Inject faults (broker restart, worker kill/join/leave, bad input, corrupt model, S3/MLflow outages)
    on stacks of its own and count lost, duplicated and dead-lettered events; exit 1 if any scenario fails."""
    from churn_stream.bench.faults import run_bench_faults

    results = run_bench_faults(settings, events=events, json_path=json_path, only=only or None)
    if not all(r.passed for r in results):
        sys.exit(1)
