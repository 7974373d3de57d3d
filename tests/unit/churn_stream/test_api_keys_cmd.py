"""``churn api keys create|list|revoke`` and ``churn api`` still serving as a group."""

from __future__ import annotations

import json

from click.testing import CliRunner

from churn_stream.cli import main


def test_create_list_revoke_round_trip(tmp_path):
    runner = CliRunner()
    env = {"CHURN_DATA_DIR": str(tmp_path), "CHURN_API_KEYS_FILE": ""}
    made = runner.invoke(main, ["api", "keys", "create", "--name", "crm", "--scope", "predict"], env=env)
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("chs_") and len(key.splitlines()) == 1  # stdout holds the key only
    assert "shown only now" in made.stderr
    listed = runner.invoke(main, ["api", "keys", "list", "--json"], env=env)
    (doc,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert doc["name"] == "crm" and doc["scopes"] == ["predict"] and doc["revoked_at"] is None
    assert key not in listed.stdout and "hash" not in doc
    table = runner.invoke(main, ["api", "keys", "list"], env=env).stdout
    assert "crm" in table and key.split("_")[1] in table and key.split("_", 2)[2] not in table
    assert runner.invoke(main, ["api", "keys", "revoke", "crm"], env=env).exit_code == 0
    again = runner.invoke(main, ["api", "keys", "revoke", "crm"], env=env)
    assert again.exit_code == 1 and "no active key named 'crm'" in again.stderr
    assert (tmp_path / "api_keys.json").stat().st_mode & 0o777 == 0o600


def test_bad_scope_and_duplicate_name_are_one_line_errors(tmp_path):
    runner = CliRunner()
    env = {"CHURN_DATA_DIR": str(tmp_path), "CHURN_API_KEYS_FILE": ""}
    bad = runner.invoke(main, ["api", "keys", "create", "--name", "x", "--scope", "root"], env=env)
    assert bad.exit_code == 2 and "'root' is not one of 'predict', 'models:read', 'admin'" in bad.stderr
    runner.invoke(main, ["api", "keys", "create", "--name", "x", "--scope", "admin"], env=env)
    dup = runner.invoke(main, ["api", "keys", "create", "--name", "x", "--scope", "admin"], env=env)
    assert dup.exit_code == 1 and dup.stderr.strip() == (
        "Error: a key named 'x' exists; revoke it first or choose another name"
    )


def test_api_without_subcommand_still_serves_and_refuses_to_start_without_keys(tmp_path):
    runner = CliRunner()
    env = {"CHURN_DATA_DIR": str(tmp_path), "CHURN_API_KEYS_FILE": "", "CHURN_API_AUTH": "on", "CHURN_API_JWKS_URL": ""}
    r = runner.invoke(main, ["api", "--port", "8123"], env=env)
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: AuthConfigError: API authentication is on and ")
    assert "churn api keys create" in r.stderr
    assert "--host" in runner.invoke(main, ["api", "--help"]).stdout
