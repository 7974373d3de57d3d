"""``churn bench faults``: run the scenarios on stacks of their own, print and save the results."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from churn_stream.bench.faults.accounting import FaultResult, format_table
from churn_stream.bench.faults.harness import fault_stack
from churn_stream.bench.faults.scenarios import BATCH_SCENARIOS, SCENARIO_FUNCS, SCENARIOS, STREAM_SCENARIOS
from plumbing.settings import Settings

logger = logging.getLogger(__name__)


def run_bench_faults(
    settings: Settings | None = None,
    events: int = 10_000,
    json_path: Path | None = None,
    only: tuple[str, ...] | None = None,
) -> list[FaultResult]:
    """Run the fault scenarios on stacks of their own; print a table; return (and optionally save) the results.

    Parameters
    ----------
    settings : Settings, optional
        Base settings (partitions, thresholds); the endpoints are the bench's own stacks.
    events : int, default 10000
        Records per scenario.
    json_path : Path, optional
        Write the results as a JSON list of objects.
    only : tuple of str, optional
        Run only these scenarios (names in :data:`SCENARIOS`).

    Returns
    -------
    list of FaultResult
    """
    names = [s for s in SCENARIOS if not only or s in only]
    unknown = set(only or ()) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"scenario: expected some of {', '.join(SCENARIOS)}, got {sorted(unknown)}")
    workdir = Path(tempfile.mkdtemp(prefix="churn-faults-"))
    results: list[FaultResult] = []
    t0 = time.monotonic()
    for group, ephemeral in ((STREAM_SCENARIOS, False), (BATCH_SCENARIOS, True)):
        todo = [s for s in names if s in group]
        if not todo:
            continue
        with fault_stack(workdir / ("batch" if ephemeral else "stream"), ephemeral=ephemeral, base=settings) as env:
            for name in todo:
                print(f"scenario {name} ...", flush=True)
                try:
                    result = SCENARIO_FUNCS[name](env, events)
                except Exception as exc:  # report the harness failure and go on
                    logger.exception("scenario=%s harness error", name)
                    result = FaultResult(name, detail={"error_in_harness": f"{type(exc).__name__}: {exc}"})
                results.append(result)
                print(f"scenario {name}: {orjson.dumps(result.as_dict()).decode()}", flush=True)
    print(format_table(results))
    print(f"{len(results)} scenarios in {time.monotonic() - t0:.0f} s")
    if json_path is not None:
        Path(json_path).write_text(
            orjson.dumps([r.as_dict() for r in results], option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    if all(r.passed for r in results):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept logs for inspection in {workdir}")
    return results
