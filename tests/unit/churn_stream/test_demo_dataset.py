"""`churn demo --dataset`: which source it trains on and scores, and what the worker it starts is told."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from churn_stream import demo
from churn_stream.cli import main
from plumbing.settings import Settings
from schemas.profiles import get_profile

NO_SOURCE_PROFILE = """\
format_version: 1
name: shop
id: {column: id}
label: {field: left}
fields:
- {column: id, name: customer_id, type: identifier}
- {column: visits, name: visits, type: integer}
- {column: left, name: left, type: yes_no}
features: {numeric: [visits], categorical: []}
"""


def test_telco_demo_scores_the_shipped_file(tmp_path):
    assert demo.demo_source(get_profile("telco"), None, tmp_path) == demo.TELCO_CSV


def test_retail_demo_generates_a_demo_sized_file_once(tmp_path):
    path = demo.demo_source(get_profile("retail"), None, tmp_path)
    assert path == tmp_path / "demo" / f"retail_{demo.DEMO_RETAIL_ROWS}_seed0.csv"
    assert sum(1 for _ in path.open()) == demo.DEMO_RETAIL_ROWS + 1
    written = path.stat().st_mtime_ns
    assert demo.demo_source(get_profile("retail"), None, tmp_path) == path
    assert path.stat().st_mtime_ns == written  # same seed, same file: kept


def test_a_table_of_ones_own_needs_its_csv(tmp_path):
    profile_path = tmp_path / "shop.yaml"
    profile_path.write_text(NO_SOURCE_PROFILE)
    with pytest.raises(demo.DemoError, match="'shop' has no shipped or generated source"):
        demo.demo_source(get_profile(profile_path), None, tmp_path)
    assert demo.demo_source(get_profile(profile_path), tmp_path / "my.csv", tmp_path) == tmp_path / "my.csv"
    result = CliRunner().invoke(main, ["demo", "--dataset", str(profile_path), "--exit"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --source is required for --dataset shop:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_worker_is_started_for_the_chosen_dataset(tmp_path, monkeypatch):
    seen = {}

    def fake_popen(args, env, **kwargs):
        seen.update(args=args, env=env)
        return None

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    profile_path = str(tmp_path / "shop.yaml")
    demo.start_worker(Settings(dataset=profile_path, data_dir=tmp_path), tmp_path / "worker.log")
    assert seen["args"][-1] == "worker" and seen["env"]["CHURN_DATASET"] == profile_path
