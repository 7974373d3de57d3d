"""API keys: created once, stored only as salted scrypt hashes, looked up by their id.

A key reads ``chs_<id>_<secret>``: ``chs`` says what it is (a secret scanner can match it),
``<id>`` (12 hex digits, not secret) names the record to check, and only ``<secret>``
(32 random bytes, URL-safe base64) is hashed, with ``hashlib.scrypt`` and a random 16-byte
salt per key; hashes are compared with :func:`hmac.compare_digest`. The key file (JSON,
written mode 600 by an atomic replace) holds names, ids, scopes, dates and hashes, never a
key. A key is shown once, by :meth:`ApiKeyStore.create`; a lost key is revoked and replaced.

The prediction API checks keys with :class:`ApiKeyStore` (it re-reads the file when it
changes, so a revocation applies without a restart); the dashboard can use the same store.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

#: Scopes a key or token may carry: ``predict`` (``POST /api/predict``), ``models:read``
#: (``GET /api/models``, ``GET /api/metrics``) and ``admin`` (every route).
SCOPE_PREDICT = "predict"
SCOPE_MODELS_READ = "models:read"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_PREDICT, SCOPE_MODELS_READ, SCOPE_ADMIN)
#: The first part of every key.
KEY_PREFIX = "chs"
#: scrypt cost (Python's documented example; 16 MiB of memory, ~50 ms on one idle core).
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 1 << 14, 8, 1, 32
#: Version of the key file's layout.
FILE_FORMAT = 1

_KEY_RE = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ApiKeyError(ValueError):
    """A key-store request that cannot be done (bad name or scope, duplicate, unknown name)."""


@dataclass(frozen=True)
class ApiKeyRecord:
    """One key as stored: who it is for and what it may do, and the hash of its secret.

    Attributes
    ----------
    name : str
        Unique among keys not revoked (``dashboard``, ``crm-batch``).
    key_id : str
        12 hex digits, the key's second part; not secret.
    scopes : tuple of str
        Some of :data:`SCOPES`.
    created_at : str
        ISO 8601, UTC.
    revoked_at : str or None
        ISO 8601, UTC; a revoked key is refused.
    salt, digest : bytes
        The scrypt salt and hash of the secret; hidden from ``repr``.
    n, r, p : int
        The scrypt parameters the digest was made with.
    """

    name: str
    key_id: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None = None
    salt: bytes = field(default=b"", repr=False)
    digest: bytes = field(default=b"", repr=False)
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    def to_json(self) -> dict[str, object]:
        """The record as written to the key file."""
        return {
            "name": self.name,
            "id": self.key_id,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "scrypt": {
                "n": self.n,
                "r": self.r,
                "p": self.p,
                "salt": base64.b64encode(self.salt).decode(),
                "hash": base64.b64encode(self.digest).decode(),
            },
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> ApiKeyRecord:
        """A record read from the key file."""
        kdf = doc["scrypt"]
        assert isinstance(kdf, dict)
        scopes = doc["scopes"]
        assert isinstance(scopes, list)
        revoked = doc.get("revoked_at")
        return cls(
            name=str(doc["name"]),
            key_id=str(doc["id"]),
            scopes=tuple(str(s) for s in scopes),
            created_at=str(doc["created_at"]),
            revoked_at=None if revoked is None else str(revoked),
            salt=base64.b64decode(kdf["salt"]),
            digest=base64.b64decode(kdf["hash"]),
            n=int(kdf["n"]),
            r=int(kdf["r"]),
            p=int(kdf["p"]),
        )

    def public(self) -> dict[str, object]:
        """What ``churn api keys list`` shows: everything but the hash."""
        return {
            "name": self.name,
            "id": self.key_id,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def split_key(presented: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a string shaped like a key, else None (nothing is hashed for it)."""
    m = _KEY_RE.match(presented)
    return (m.group(1), m.group(2)) if m else None


def looks_like_key(presented: str) -> bool:
    """Whether ``presented`` claims to be one of our keys (starts with ``chs_``), well formed or not."""
    return presented.startswith(KEY_PREFIX + "_")


def hash_secret(secret: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    """The scrypt hash of a key's secret part.

    Parameters
    ----------
    secret : str
        The third part of the key.
    salt : bytes
        16 random bytes, per key.
    n, r, p : int
        scrypt's cost parameters.

    Returns
    -------
    bytes of length 32
    """
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=SCRYPT_DKLEN, maxmem=64 << 20)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class KeyCheck:
    """The outcome of :meth:`ApiKeyStore.verify`.

    Attributes
    ----------
    record : ApiKeyRecord or None
        The key's record when it was accepted.
    reason : str
        ``ok``, ``malformed_key``, ``unknown_key``, ``revoked_key`` or ``wrong_secret``.
    """

    record: ApiKeyRecord | None
    reason: str


class ApiKeyStore:
    """The key file: create, list, revoke, and verify presented keys.

    Parameters
    ----------
    path : pathlib.Path
        The JSON key file (``CHURN_API_KEYS_FILE``; default ``$CHURN_DATA_DIR/api_keys.json``).
    reload_s : float, default 1.0
        At most this often, :meth:`verify` looks whether the file changed (a key revoked by
        ``churn api keys revoke`` is refused within this time, without a restart).
    """

    def __init__(self, path: Path, reload_s: float = 1.0) -> None:
        self.path = Path(path)
        self.reload_s = reload_s
        self._lock = threading.Lock()
        self._records: dict[str, ApiKeyRecord] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        # key_id -> SHA-256 of a secret scrypt already accepted: one scrypt per key and process,
        # not one per request (scrypt costs ~50 ms; the predict path ~1 ms). Cleared on any change.
        self._accepted: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"ApiKeyStore(path={str(self.path)!r})"

    # -- the file
    def exists(self) -> bool:
        """Whether the key file exists."""
        return self.path.is_file()

    def records(self) -> list[ApiKeyRecord]:
        """Every record in the file (revoked ones too), in creation order; [] without a file.

        Raises
        ------
        ApiKeyError
            If the file is not a key file.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = json.loads(raw)
            return [ApiKeyRecord.from_json(d) for d in doc["keys"]]
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise ApiKeyError(f"{self.path}: not an API key file ({type(exc).__name__})") from None

    def active(self) -> list[ApiKeyRecord]:
        """The records not revoked."""
        return [r for r in self.records() if r.revoked_at is None]

    def _write(self, records: list[ApiKeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = json.dumps({"format": FILE_FORMAT, "keys": [r.to_json() for r in records]}, indent=2).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when the file existed with wider rights
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise read-modify-write of the file across processes (two CLIs at once)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # no fcntl on Windows: one writer at a time is then the user's care
                pass
            yield
        finally:
            os.close(fd)

    # -- management (the CLI)
    def create(self, name: str, scopes: list[str] | tuple[str, ...]) -> tuple[ApiKeyRecord, str]:
        """Make a new key, store its hash, and return the key (the only time it exists in clear).

        Parameters
        ----------
        name : str
            Letters, digits, ``.``, ``_``, ``-`` (at most 64); unique among keys not revoked.
        scopes : sequence of str
            Some of :data:`SCOPES`, at least one.

        Returns
        -------
        record : ApiKeyRecord
        key : str
            ``chs_<id>_<secret>``.

        Raises
        ------
        ApiKeyError
            For a bad name or scope, or a name already in use.
        """
        if not _NAME_RE.match(name):
            raise ApiKeyError(f"name: expected letters, digits, '.', '_' or '-' (at most 64), got {name!r}")
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise ApiKeyError(f"scope: expected one or more of {', '.join(SCOPES)}, got {', '.join(unknown) or 'none'}")
        with self._exclusive():
            records = self.records()
            if any(r.name == name and r.revoked_at is None for r in records):
                raise ApiKeyError(f"a key named {name!r} exists; revoke it first or choose another name")
            ids = {r.key_id for r in records}
            key_id = secrets.token_hex(6)
            while key_id in ids:
                key_id = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            salt = secrets.token_bytes(16)
            record = ApiKeyRecord(
                name=name,
                key_id=key_id,
                scopes=tuple(dict.fromkeys(scopes)),
                created_at=_now(),
                salt=salt,
                digest=hash_secret(secret, salt),
            )
            self._write([*records, record])
        logger.info("API key created name=%s id=%s scopes=%s", name, key_id, ",".join(record.scopes))
        return record, f"{KEY_PREFIX}_{key_id}_{secret}"

    def revoke(self, name: str) -> ApiKeyRecord:
        """Mark the key named ``name`` revoked (its record stays, so ``list`` shows when).

        Raises
        ------
        ApiKeyError
            When no key of that name is active.
        """
        with self._exclusive():
            records = self.records()
            for i, r in enumerate(records):
                if r.name == name and r.revoked_at is None:
                    revoked = ApiKeyRecord(**{**r.__dict__, "revoked_at": _now()})
                    records[i] = revoked
                    self._write(records)
                    logger.info("API key revoked name=%s id=%s", name, r.key_id)
                    return revoked
        raise ApiKeyError(f"no active key named {name!r}")

    # -- verification (the API)
    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.reload_s:
            return
        with self._lock:
            self._checked = now
            try:
                st = self.path.stat()
                stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamp:
                return
            try:
                records = {r.key_id: r for r in self.records()}
            except ApiKeyError as err:
                logger.error("API key file unreadable, keeping the keys read before error=%s", err)
                return
            self._records = records
            self._accepted = {}
            self._stamp = stamp
            logger.info(
                "API keys loaded active=%d path=%s", sum(r.revoked_at is None for r in records.values()), self.path
            )

    def check_fast(self, presented: str) -> KeyCheck | None:
        """Decide without scrypt when possible (cheap enough for the event loop).

        Returns
        -------
        KeyCheck or None
            The answer for a malformed, unknown or revoked key and for a secret already
            accepted by this process; None when only :meth:`verify` (scrypt) can tell.
        """
        parts = split_key(presented)
        if parts is None:
            return KeyCheck(None, "malformed_key")
        key_id, secret = parts
        self._refresh()
        record = self._records.get(key_id)
        if record is None:
            return KeyCheck(None, "unknown_key")
        if record.revoked_at is not None:
            return KeyCheck(None, "revoked_key")
        known = self._accepted.get(key_id)
        if known is not None and hmac.compare_digest(known, hashlib.sha256(secret.encode()).digest()):
            return KeyCheck(record, "ok")
        return None

    def verify(self, presented: str) -> KeyCheck:
        """Check a presented key (blocking: may run scrypt; call it off the event loop).

        Parameters
        ----------
        presented : str
            What came after ``Bearer``.

        Returns
        -------
        KeyCheck
            The record when accepted, and the reason otherwise.
        """
        fast = self.check_fast(presented)
        if fast is not None:
            return fast
        key_id, secret = split_key(presented) or ("", "")
        record = self._records.get(key_id)
        if record is None:  # the file changed between the two looks
            return KeyCheck(None, "unknown_key")
        if hmac.compare_digest(hash_secret(secret, record.salt, record.n, record.r, record.p), record.digest):
            self._accepted[key_id] = hashlib.sha256(secret.encode()).digest()
            return KeyCheck(record, "ok")
        return KeyCheck(None, "wrong_secret")
