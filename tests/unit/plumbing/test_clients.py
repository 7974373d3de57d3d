"""Kafka security settings: read once (``kafka_security``), the same for aiokafka and for Faust."""

from __future__ import annotations

import ssl

import pytest

from plumbing.clients import KAFKA_SECURITY_PROTOCOLS, faust_credentials, kafka_kwargs, kafka_security
from plumbing.settings import Settings

PASSWORD = "s3cr3t-Kafka-Password-42"


def _settings(protocol: str, mechanism: str = "") -> Settings:
    return Settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="churn",
        kafka_sasl_password=PASSWORD,
    )


@pytest.mark.parametrize(
    ("protocol", "mechanism", "want_protocol", "want_mechanism"),
    [
        ("sasl_plaintext", "scram-sha-512", "SASL_PLAINTEXT", "SCRAM-SHA-512"),
        (" SASL_SSL ", " scram-sha-256 ", "SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_PLAINTEXT", "", "SASL_PLAINTEXT", "PLAIN"),
    ],
)
def test_aiokafka_and_faust_get_the_same_upper_cased_protocol_and_mechanism(
    protocol, mechanism, want_protocol, want_mechanism
):
    settings = _settings(protocol, mechanism)
    kwargs = kafka_kwargs(settings)
    creds = faust_credentials(settings)
    assert kwargs["security_protocol"] == creds.protocol.value == want_protocol
    assert kwargs["sasl_mechanism"] == creds.mechanism.value == want_mechanism
    assert kwargs["sasl_plain_username"] == creds.username == "churn"
    assert kwargs["sasl_plain_password"] == creds.password == PASSWORD
    assert (kwargs.get("ssl_context") is not None) == (creds.ssl_context is not None) == want_protocol.endswith("SSL")


def test_ssl_without_sasl():
    settings = _settings("ssl")
    kwargs = kafka_kwargs(settings)
    creds = faust_credentials(settings)
    assert kwargs["security_protocol"] == creds.protocol.value == "SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext) and isinstance(creds.context, ssl.SSLContext)
    assert "sasl_mechanism" not in kwargs


def test_plaintext_is_bootstrap_servers_only():
    settings = _settings("plaintext", "scram-sha-512")
    assert kafka_kwargs(settings) == {"bootstrap_servers": settings.kafka_bootstrap_servers}
    assert faust_credentials(settings) is None


@pytest.mark.parametrize("protocol", ["SASL", "TLS", ""])
def test_unknown_protocol_is_refused_by_both_paths(protocol):
    settings = _settings(protocol)
    for build in (kafka_kwargs, faust_credentials):
        with pytest.raises(ValueError, match="KAFKA_SECURITY_PROTOCOL: expected one of") as err:
            build(settings)
        assert all(p in str(err.value) for p in KAFKA_SECURITY_PROTOCOLS)


def test_password_stays_out_of_the_repr():
    assert PASSWORD not in repr(kafka_security(_settings("SASL_PLAINTEXT", "PLAIN")))


def test_rdkafka_config_translates_the_kafka_security_settings():
    from plumbing.clients import rdkafka_config

    plain = Settings().with_overrides(kafka_bootstrap_servers="b:9092")
    assert rdkafka_config(plain) == {"bootstrap.servers": "b:9092"}
    secure = plain.with_overrides(
        kafka_security_protocol="sasl_ssl",
        kafka_ssl_cafile="/ca.pem",
        kafka_sasl_mechanism="scram-sha-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert rdkafka_config(secure) == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "/ca.pem",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
    }
    with pytest.raises(ValueError, match="KAFKA_SECURITY_PROTOCOL"):
        rdkafka_config(plain.with_overrides(kafka_security_protocol="tls"))
