"""Settings: read once from the environment, defaults for the local stack, secrets hidden."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from plumbing.settings import LOCAL_DEFAULT_ACCESS_KEY, LOCAL_DEFAULT_SECRET_KEY, Settings, SettingsError

SECRET = "s3cr3t-Production-Key-9f8e7d"
ACCESS = "AKIA-prod-access-1234"


def test_defaults_point_at_local_stack():
    s = Settings.from_env({})
    assert s == Settings()
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.minio_endpoint == "127.0.0.1:9000"
    assert s.minio_access_key == LOCAL_DEFAULT_ACCESS_KEY == "churn-local"
    assert s.minio_secret_key == LOCAL_DEFAULT_SECRET_KEY == "churn-local-secret"
    assert s.minio_secure is False
    assert s.mlflow_tracking_uri == "http://127.0.0.1:5001"
    assert s.data_dir == Path(".churn")
    assert s.consumer_group == "churn-scorer"
    assert s.topic_partitions == 4
    assert s.worker_web_port == 6066
    assert s.s3_endpoint_url == "http://127.0.0.1:9000"


def test_unrelated_variables_are_ignored():
    assert Settings.from_env({"PATH": "/bin", "HOME": "/root", "topic_partitions": "x"}) == Settings()


def test_overrides_from_environment():
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "MINIO_ENDPOINT": "s3.example:443",
        "MINIO_SECURE": "true",
        "MINIO_ACCESS_KEY": ACCESS,
        "MINIO_SECRET_KEY": SECRET,
        "MLFLOW_TRACKING_URI": "https://mlflow.example",
        "CHURN_DATA_DIR": "/var/lib/churn",
        "CHURN_CONSUMER_GROUP": "scorers-b",
        "CHURN_TOPIC_PARTITIONS": "12",
        "CHURN_WORKER_WEB_PORT": " 7070 ",
    }
    s = Settings.from_env(env)
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.minio_endpoint == "s3.example:443"
    assert s.minio_secure is True
    assert s.minio_access_key == ACCESS
    assert s.minio_secret_key == SECRET
    assert s.mlflow_tracking_uri == "https://mlflow.example"
    assert s.data_dir == Path("/var/lib/churn") and isinstance(s.data_dir, Path)
    assert s.consumer_group == "scorers-b"
    assert s.topic_partitions == 12 and isinstance(s.topic_partitions, int)
    assert s.worker_web_port == 7070
    assert s.s3_endpoint_url == "https://s3.example:443"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("", False),
    ],
)
def test_boolean_parsing(raw, expected):
    assert Settings.from_env({"MINIO_SECURE": raw}).minio_secure is expected


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("CHURN_TOPIC_PARTITIONS", "7")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    s = Settings.from_env()
    assert s.topic_partitions == 7
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"


@pytest.mark.parametrize("var", ["CHURN_TOPIC_PARTITIONS", "CHURN_WORKER_WEB_PORT"])
@pytest.mark.parametrize("raw", ["four", "", "4.5"])
def test_bad_int_raises_value_error_naming_the_variable(var, raw):
    with pytest.raises(ValueError) as info:
        Settings.from_env({var: raw})
    msg = str(info.value)
    assert msg.startswith(f"{var}: ")
    assert "int" in msg
    assert repr(raw) in msg


def test_secret_never_appears_in_repr_or_str():
    s = Settings.from_env({"MINIO_SECRET_KEY": SECRET, "MINIO_ACCESS_KEY": ACCESS})
    for text in (repr(s), str(s), f"{s}", f"{s!r}"):
        assert SECRET not in text
        assert ACCESS not in text
        assert "minio_secret_key" not in text
    # The repr is still useful: non-secret settings are shown.
    assert "kafka_bootstrap_servers='127.0.0.1:9092'" in repr(s)
    assert LOCAL_DEFAULT_SECRET_KEY not in repr(Settings())
    # A copy with overrides hides it too.
    assert SECRET not in repr(s.with_overrides(worker_web_port=1))


def test_settings_are_frozen_and_with_overrides_copies():
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.topic_partitions = 8  # type: ignore[misc]
    t = s.with_overrides(topic_partitions=8, minio_secret_key=SECRET)
    assert t.topic_partitions == 8 and t.minio_secret_key == SECRET
    assert s.topic_partitions == 4 and s.minio_secret_key == LOCAL_DEFAULT_SECRET_KEY


def test_every_field_has_an_environment_variable():
    assert sorted(Settings._ENV) == sorted(f.name for f in dataclasses.fields(Settings))


def test_cli_reports_a_bad_variable_in_one_line_without_a_traceback():
    from click.testing import CliRunner

    from churn_stream.cli import main

    result = CliRunner().invoke(main, ["stack", "status"], env={"CHURN_WORKER_WEB_PORT": "abc"})
    assert result.exit_code == 1
    assert "Error: SettingsError: CHURN_WORKER_WEB_PORT: expected int, got 'abc'" in result.output
    assert "Traceback" not in result.output


def test_cli_bounds_mlflow_client_retries_unless_the_environment_chooses():
    from churn_stream.cli import MLFLOW_CLIENT_DEFAULTS, _bound_mlflow_retries

    env: dict[str, str] = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    _bound_mlflow_retries(env)
    assert env == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    assert MLFLOW_CLIENT_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MINIO_ENDPOINT": "http://127.0.0.1:9000"}, "MINIO_ENDPOINT: expected host:port without a scheme"),
        ({"CHURN_WORKER_WEB_PORT": "99999"}, "CHURN_WORKER_WEB_PORT: expected a port in 1..65535, got 99999"),
        ({"CHURN_WORKER_WEB_PORT": "0"}, "CHURN_WORKER_WEB_PORT: expected a port in 1..65535, got 0"),
    ],
)
def test_endpoint_and_port_mistakes_are_settings_errors(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_dashboard_api_url_accepts_the_base_url_churn_api_prints():
    from churn_stream.cli import predict_url

    assert predict_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/api/predict"
    assert predict_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/api/predict"
    assert predict_url("https://churn.example/api/predict") == "https://churn.example/api/predict"
    assert predict_url("http://proxy:80/churn/api/predict") == "http://proxy:80/churn/api/predict"
