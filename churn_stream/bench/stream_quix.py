"""The Quix Streams contender of ``churn bench stream``: the relay's work as a Quix ``StreamingDataFrame``.

Quix Streams is not a dependency of this project: the bench runs this module with the
interpreter of a virtualenv of its own (``churn bench stream --quix-python PATH``), with
this checkout on ``PYTHONPATH`` for the event contract and the numpy models::

    python -m venv /tmp/quixenv
    /tmp/quixenv/bin/pip install quixstreams numpy orjson pyyaml
    churn bench stream --quix-python /tmp/quixenv/bin/python

(pydantic comes with quixstreams; pyyaml is for the dataset profiles of :mod:`schemas`.)

Per event, the work of the relays (:mod:`churn_stream.bench.stream_contenders`):
pydantic validation, ``predict_proba``, the score document, ``reasons`` for an alert,
``orjson`` encoding, one produce to the scores topic and one more to the alerts topic for
an alert. Quix Streams processes one record at a time (it has no micro-batch API), so the
model scores one row per call, as the naive Faust agent does. Offsets are committed by
Quix's own checkpoints (every ``commit_interval``, 5 s by default, after the producer is
flushed: at-least-once), the library's default and recommended setting.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any


def run_quix(args: argparse.Namespace) -> None:
    """Score ``args.input`` into ``args.output`` and ``args.alerts`` with a Quix Streams app (blocking).

    Parameters
    ----------
    args : argparse.Namespace
        ``bootstrap``, ``input``, ``output``, ``alerts``, ``group``, ``pipeline`` (a ``.npz``),
        ``data_dir`` (Quix's state directory), ``model_name``, ``model_version``.
    """
    import orjson
    from quixstreams import Application

    from churn_stream.bench.stream_contenders import _reasons, _score_doc
    from schemas.events import CustomerEvent
    from scratch_models.pipeline import ScoringPipeline
    from stream_app.scoring import event_columns

    pipeline = ScoringPipeline.load(args.pipeline)
    names = pipeline.feature_names_in
    # Any: the pipeline types its model as BaseModel, which declares no predict_proba (each model does).
    model: Any = pipeline.model
    threshold = pipeline.threshold

    def score(value: bytes) -> tuple[bytes, bytes | None]:
        ev = CustomerEvent.model_validate_json(value)
        X = pipeline.transform(event_columns([ev], names))
        p = float(model.predict_proba(X)[0, 1])
        doc = _score_doc(ev, p, threshold, args.model_name, args.model_version, datetime.now(UTC).isoformat())
        alert = orjson.dumps(dict(doc, reasons=_reasons(pipeline, X)[0])) if p >= threshold else None
        return orjson.dumps(doc), alert

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        auto_create_topics=False,
        use_changelog_topics=False,
        state_dir=args.data_dir,
        loglevel="WARNING",
    )
    source = app.topic(args.input, value_deserializer="bytes", key_deserializer="bytes")
    scores = app.topic(args.output, value_serializer="bytes", key_serializer="bytes")
    alerts = app.topic(args.alerts, value_serializer="bytes", key_serializer="bytes")
    pairs = app.dataframe(source).apply(score)
    pairs.apply(lambda pair: pair[0]).to_topic(scores)
    pairs.filter(lambda pair: pair[1] is not None).apply(lambda pair: pair[1]).to_topic(alerts)
    app.run()


def main(argv: list[str] | None = None) -> None:
    """Entry of the Quix contender process (started by :func:`churn_stream.bench.stream.run_bench_stream`)."""
    parser = argparse.ArgumentParser(prog="python -m churn_stream.bench.stream_quix")
    for opt in (
        "--bootstrap",
        "--input",
        "--output",
        "--alerts",
        "--group",
        "--pipeline",
        "--data-dir",
        "--model-name",
        "--model-version",
    ):
        parser.add_argument(opt, required=True)
    run_quix(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
