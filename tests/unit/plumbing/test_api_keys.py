"""The API key file: keys shown once, stored as salted scrypt hashes, refused once revoked."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest

from plumbing.api_keys import SCRYPT_N, ApiKeyError, ApiKeyStore, hash_secret, split_key
from plumbing.settings import Settings, SettingsError


def test_create_stores_only_a_salted_scrypt_hash_in_a_mode_600_file(tmp_path):
    store = ApiKeyStore(tmp_path / "keys.json")
    record, key = store.create("dashboard", ["predict", "models:read"])
    key_id, secret = split_key(key)
    assert key.startswith("chs_") and key_id == record.key_id and len(secret) == 43
    raw = store.path.read_text()
    assert secret not in raw and key not in raw
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    doc = json.loads(raw)["keys"][0]
    assert doc["scopes"] == ["predict", "models:read"] and doc["scrypt"]["n"] == SCRYPT_N
    assert hash_secret(secret, record.salt) == record.digest
    # Salted: the same secret under another salt hashes differently.
    assert hash_secret(secret, b"\0" * 16) != record.digest
    assert hashlib.sha256(secret.encode()).hexdigest() not in raw


def test_repr_and_list_never_show_hash_or_salt(tmp_path):
    store = ApiKeyStore(tmp_path / "keys.json")
    record, key = store.create("crm", ["admin"])
    assert "digest" not in repr(record) and "salt" not in repr(record)
    assert set(record.public()) == {"name", "id", "scopes", "created_at", "revoked_at"}
    assert key not in repr(store)


def test_verify_accepts_the_key_and_refuses_others_with_a_reason(tmp_path):
    store = ApiKeyStore(tmp_path / "keys.json", reload_s=0)
    record, key = store.create("a", ["predict"])
    assert store.verify(key).record == record
    assert store.verify(key).reason == "ok"  # the in-memory shortcut gives the same answer
    key_id, secret = split_key(key)
    assert store.verify(f"chs_{key_id}_{'A' * 43}").reason == "wrong_secret"
    assert store.verify(f"chs_{'0' * 12}_{secret}").reason == "unknown_key"
    assert store.verify("chs_nothex_x").reason == "malformed_key"
    assert store.verify(key + "x").reason == "malformed_key"
    store.revoke("a")
    assert store.verify(key).reason == "revoked_key"


def test_revoked_name_can_be_reused_and_active_names_cannot(tmp_path):
    store = ApiKeyStore(tmp_path / "keys.json")
    store.create("a", ["predict"])
    with pytest.raises(ApiKeyError, match="exists"):
        store.create("a", ["predict"])
    store.revoke("a")
    _, key2 = store.create("a", ["models:read"])
    assert [r.revoked_at is None for r in store.records()] == [False, True]
    with pytest.raises(ApiKeyError, match="no active key"):
        store.revoke("b")
    with pytest.raises(ApiKeyError, match="scope"):
        store.create("c", ["root"])
    with pytest.raises(ApiKeyError, match="name"):
        store.create("has space", ["predict"])


def test_a_file_that_is_not_a_key_file_is_an_error(tmp_path):
    (tmp_path / "keys.json").write_text("[1, 2]")
    with pytest.raises(ApiKeyError, match="not an API key file"):
        ApiKeyStore(tmp_path / "keys.json").records()


def test_settings_api_fields_from_env_and_hidden_key():
    s = Settings.from_env(
        {
            "CHURN_API_AUTH": "none",
            "CHURN_API_KEYS_FILE": "/x/k.json",
            "CHURN_API_AUTH_MAX_FAILURES": "5",
            "CHURN_API_KEY": "chs_0123456789ab_secretsecret",
        }
    )
    assert (s.api_auth, str(s.api_keys_path), s.api_auth_max_failures) == ("none", "/x/k.json", 5)
    assert "secretsecret" not in repr(s)
    assert Settings.from_env({"CHURN_DATA_DIR": "/d"}).api_keys_path.as_posix() == "/d/api_keys.json"
    assert Settings().api_auth == "on"
    with pytest.raises(SettingsError, match="CHURN_API_AUTH"):
        Settings.from_env({"CHURN_API_AUTH": "off"})
    with pytest.raises(SettingsError, match="CHURN_API_JWT_ISSUER"):
        Settings.from_env({"CHURN_API_JWKS_URL": "http://idp/jwks"})
