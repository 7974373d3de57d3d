"""A lock across processes and hosts: one S3 object in the ``models`` bucket.

It is created with a conditional put (``If-None-Match: *``), so of two writers exactly one
gets it; SeaweedFS, MinIO and AWS S3 answer the other with 412 Precondition Failed
(``tests/integration/test_batch_service.py`` checks this against the real server).
The object holds its owner and an expiry time; the owner renews it while it works
(conditional on the ETag it wrote, ``If-Match``), so a holder that died is taken over
after the expiry and a live one never is. Every write is read back to verify the owner.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

logger = logging.getLogger(__name__)

LOCK_BUCKET = "models"
LOCK_KEY = "locks/batch-cycle.lock"
_LOST = ("PreconditionFailed", "ConditionalRequestConflict")


class S3Lock:
    """A lease on ``s3://<bucket>/<key>`` with owner and expiry.

    Parameters
    ----------
    storage : minio.Minio
    bucket : str, default "models"
    key : str, default "locks/batch-cycle.lock"
    ttl_s : float, default 600
        Lease length; :meth:`held` renews it every ``ttl_s / 3`` seconds.
    owner : str, optional
        Default: ``<host>:<pid>:<random>``, unique per instance.
    """

    def __init__(
        self, storage, bucket: str = LOCK_BUCKET, key: str = LOCK_KEY, ttl_s: float = 600.0, owner: str | None = None
    ) -> None:
        self.storage = storage
        self.bucket = bucket
        self.key = key
        self.ttl_s = float(ttl_s)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._etag: str | None = None

    def __repr__(self) -> str:
        return f"S3Lock(s3://{self.bucket}/{self.key}, owner={self.owner!r}, ttl_s={self.ttl_s:g})"

    # -------------------------------------------------------------- primitives
    def _record(self) -> bytes:
        now = time.time()
        return json.dumps({"owner": self.owner, "acquired_at": now, "expires_at": now + self.ttl_s}).encode()

    def _put(self, condition: dict[str, str]) -> str | None:
        """Conditional PutObject; the new ETag, or None when the condition did not hold."""
        from minio.error import S3Error

        body = self._record()
        try:
            # minio's public put_object turns unknown headers into x-amz-meta-*; the
            # conditional headers must reach the server as they are.
            result = self.storage._put_object(
                self.bucket, self.key, body, headers={"Content-Type": "application/json", **condition}
            )
        except S3Error as err:
            if err.code in _LOST:
                return None
            raise
        return result.etag

    def read(self) -> tuple[dict[str, Any], str] | None:
        """The current lock record and its ETag, or None when nobody holds the lock."""
        from minio.error import S3Error

        try:
            resp = self.storage.get_object(self.bucket, self.key)
        except S3Error as err:
            if err.code == "NoSuchKey":
                return None
            raise
        try:
            body = resp.read()
            etag = (resp.headers.get("ETag") or "").strip('"')
        finally:
            resp.close()
            resp.release_conn()
        try:
            record = json.loads(body)
        except ValueError:
            record = {"owner": "?", "expires_at": 0.0}  # unreadable: treat as expired
        return record, etag

    def _verified(self, etag: str | None) -> bool:
        current = self.read()
        if etag is None or current is None or current[0].get("owner") != self.owner:
            self._etag = None
            return False
        self._etag = current[1] or etag
        return True

    # ------------------------------------------------------------------ public
    def acquire(self) -> bool:
        """Take the lock if it is free or expired.

        Returns
        -------
        bool
            True when this instance holds the lock now.
        """
        if self._verified(self._put({"If-None-Match": "*"})):
            logger.info("lock acquired key=%s owner=%s ttl_s=%g", self.key, self.owner, self.ttl_s)
            return True
        current = self.read()
        if current is None:  # released between our put and our read: try once more
            return self._verified(self._put({"If-None-Match": "*"}))
        record, etag = current
        left = float(record.get("expires_at", 0.0)) - time.time()
        if left > 0:
            logger.info("lock busy key=%s holder=%s expires_in_s=%.0f", self.key, record.get("owner"), left)
            return False
        # Expired: replace exactly the record we read; of several contenders one wins.
        if self._verified(self._put({"If-Match": f'"{etag}"'})):
            logger.warning(
                "lock taken over key=%s owner=%s expired_holder=%s expired_s_ago=%.0f",
                self.key,
                self.owner,
                record.get("owner"),
                -left,
            )
            return True
        return False

    def renew(self) -> bool:
        """Extend the lease; False when this instance no longer holds the lock."""
        if self._etag is None:
            return False
        ok = self._verified(self._put({"If-Match": f'"{self._etag}"'}))
        if not ok:
            logger.error("lock lost key=%s owner=%s", self.key, self.owner)
        return ok

    def release(self) -> None:
        """Delete the lock object if this instance still holds it."""
        current = self.read()
        if current is not None and current[0].get("owner") == self.owner:
            self.storage.remove_object(self.bucket, self.key)
            logger.info("lock released key=%s owner=%s", self.key, self.owner)
        self._etag = None

    def held(self) -> _Lease:
        """Context manager: renew every ``ttl_s / 3`` s in a thread while the body runs, release after.

        Use only after :meth:`acquire` returned True.
        """
        return _Lease(self)


class _Lease:
    def __init__(self, lock: S3Lock) -> None:
        self.lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="s3-lock-renew", daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(self.lock.ttl_s / 3.0):
            try:
                if not self.lock.renew():
                    return
            except Exception:  # S3 down: keep trying until the lease would expire anyway
                logger.warning("lock renewal failed key=%s owner=%s", self.lock.key, self.lock.owner, exc_info=True)

    def __enter__(self) -> S3Lock:
        self._thread.start()
        return self.lock

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.lock.release()
        except Exception:  # S3 down: the lease expires on its own
            logger.warning(
                "lock release failed key=%s owner=%s; it expires after %g s",
                self.lock.key,
                self.lock.owner,
                self.lock.ttl_s,
                exc_info=True,
            )
