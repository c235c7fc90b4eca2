"""Where registry bytes live: a local directory or an S3-compatible object store, behind one small interface.

The registry needs four things from a store: read an object with a token naming its current content, replace
it only if that token still holds (compare-and-swap), create an object only if it does not exist, and plain
reads/writes/listings. A local directory does the first two under a short flock; S3 does them with conditional
PUTs (If-Match / If-None-Match), which the store checks the server really honours before the first write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol


class StoreError(Exception):
    """The store cannot do what the registry needs (unreachable, refused, or missing a feature)."""


class Conflict(Exception):
    """A conditional write lost: the object changed, appeared, or vanished since it was read."""


class Store(Protocol):
    def url(self, rel: str) -> str: ...
    def read(self, rel: str) -> bytes: ...
    def read_versioned(self, rel: str) -> tuple[bytes | None, str | None]: ...
    def write_if(self, rel: str, data: bytes, token: str | None) -> None: ...
    def create(self, rel: str, data: bytes) -> None: ...
    def write(self, rel: str, data: bytes) -> None: ...
    def put_file(self, src: Path, rel: str) -> None: ...
    def exists(self, rel: str) -> bool: ...
    def list(self, rel: str) -> list[str]: ...
    def remove_tree(self, rel: str) -> None: ...
    def age(self, rel: str) -> float: ...
    def sweep_temporaries(self) -> list[str]: ...


class LocalStore:
    """A directory. Index replacements are write-temp + fsync + rename under an flock held only for the
    compare and the rename (the kernel drops it if the holder dies), so readers never see a partial file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, rel: str) -> str:
        return str(self.root / rel) if rel else str(self.root)

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def read_versioned(self, rel: str) -> tuple[bytes | None, str | None]:
        try:
            data = (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None, None
        return data, hashlib.sha256(data).hexdigest()

    @contextlib.contextmanager
    def _flock(self, timeout: float = 60.0) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"{self.root}/.lock held for {timeout:.0f} s by another writer"
                        ) from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_if(self, rel: str, data: bytes, token: str | None) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            with self._flock():
                if self.read_versioned(rel)[1] != token:
                    raise Conflict(rel)
                os.replace(tmp, target)
            self._fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def create(self, rel: str, data: bytes) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise Conflict(rel) from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def write(self, rel: str, data: bytes) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def put_file(self, src: Path, rel: str) -> None:
        """Stream-copy (src may be a pipe) and fsync, so a listed version is on disk."""
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fin, open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 16)
            fout.flush()
            os.fsync(fout.fileno())

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def list(self, rel: str) -> list[str]:
        path = self.root / rel
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def remove_tree(self, rel: str) -> None:
        path = self.root / rel
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def age(self, rel: str) -> float:
        return time.time() - (self.root / rel).stat().st_mtime

    def sweep_temporaries(self) -> list[str]:
        """Temporary index files of writers that died between writing and renaming them. A live writer holds
        the flock while its temporary file can still be renamed, so under the flock every one found is
        dead."""
        removed = []
        with self._flock():
            for path in self.root.glob(".*.tmp-*"):
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed


class S3Store:
    """An S3-compatible bucket (AWS, Ceph RGW as behind Chameleon's object store, SeaweedFS in the tests)
    through obstore. Credentials and endpoint come from the environment as obstore reads them
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT, AWS_REGION, AWS_ALLOW_HTTP) and are never stored
    or printed here."""

    def __init__(self, url: str) -> None:
        from obstore.store import S3Store as _S3

        rest = url[len("s3://") :]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise StoreError(f"{url}: no bucket (use s3://BUCKET/PREFIX)")
        self.prefix = prefix.strip("/")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        try:
            self.store = _S3(
                self.bucket,
                prefix=self.prefix or None,
                region=region,
                # the default, said out loud: conditional PUTs carry If-Match / If-None-Match
                conditional_put="etag",
                retry_config={"max_retries": 4, "retry_timeout": timedelta(seconds=60)},
                client_options={
                    "connect_timeout": timedelta(seconds=10),
                    "timeout": timedelta(seconds=120),
                    # passing client options replaces obstore's reading of AWS_ALLOW_HTTP, so read it here
                    "allow_http": os.environ.get("AWS_ALLOW_HTTP", "").lower() == "true",
                },
            )
        except Exception as exc:  # obstore raises its own errors for a bad configuration
            raise StoreError(f"{url}: {exc}") from None
        self._checked_conditions = False

    def url(self, rel: str) -> str:
        return "s3://" + "/".join(p for p in (self.bucket, self.prefix, rel) if p)

    @contextlib.contextmanager
    def _errors(self, rel: str) -> Iterator[None]:
        from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError

        try:
            yield
        except FileNotFoundError:
            raise FileNotFoundError(self.url(rel)) from None
        except (AlreadyExistsError, PreconditionError):
            raise Conflict(rel) from None
        except BaseError as exc:
            if "NoSuchBucket" in str(exc):
                raise StoreError(
                    f"bucket {self.bucket} does not exist; create it once "
                    f"(on Chameleon: openstack container create {self.bucket})"
                ) from None
            # obstore's messages carry the URL and status, never the credentials
            raise StoreError(f"{self.url(rel)}: {str(exc).splitlines()[0]}") from None

    def read(self, rel: str) -> bytes:
        import obstore

        with self._errors(rel):
            return bytes(obstore.get(self.store, rel).bytes())

    def read_versioned(self, rel: str) -> tuple[bytes | None, str | None]:
        import obstore

        try:
            with self._errors(rel):
                result = obstore.get(self.store, rel)
                return bytes(result.bytes()), result.meta["e_tag"]
        except FileNotFoundError:
            return None, None

    def _check_conditional_writes(self) -> None:
        """Refuse to write to a server that ignores If-None-Match / If-Match: there, concurrent writers would
        silently overwrite each other's index. Checked once per store, on a scratch object."""
        import obstore

        if self._checked_conditions:
            return
        rel = f".chiops-probe-{uuid.uuid4().hex}"
        honoured = []
        try:
            with self._errors(rel):
                obstore.put(self.store, rel, b"1", mode="create")
            for mode in ("create", {"e_tag": f'"{uuid.uuid4().hex}"'}):
                try:
                    with self._errors(rel):
                        obstore.put(self.store, rel, b"2", mode=mode)
                    honoured.append(False)
                except Conflict:
                    honoured.append(True)
        finally:
            with contextlib.suppress(Exception):
                obstore.delete(self.store, rel)
        if not all(honoured):
            raise StoreError(
                f"the object store behind s3://{self.bucket} ignores conditional PUTs "
                "(If-None-Match/If-Match); the registry cannot keep concurrent writers apart there "
                "and refuses to write"
            )
        self._checked_conditions = True

    def write_if(self, rel: str, data: bytes, token: str | None) -> None:
        import obstore

        self._check_conditional_writes()
        with self._errors(rel):
            obstore.put(self.store, rel, data, mode="create" if token is None else {"e_tag": token})

    def create(self, rel: str, data: bytes) -> None:
        self.write_if(rel, data, None)

    def write(self, rel: str, data: bytes) -> None:
        import obstore

        with self._errors(rel):
            obstore.put(self.store, rel, data)

    def put_file(self, src: Path, rel: str) -> None:
        """Streamed from an open file (src may be a pipe); large files go up in parts."""
        import obstore

        with open(src, "rb") as fh, self._errors(rel):
            obstore.put(self.store, rel, iter(lambda: fh.read(1 << 20), b""))

    def exists(self, rel: str) -> bool:
        import obstore

        try:
            with self._errors(rel):
                obstore.head(self.store, rel)
            return True
        except FileNotFoundError:
            with self._errors(rel):  # a "directory": some object under the prefix
                return any(batch for batch in obstore.list(self.store, rel.rstrip("/") + "/", chunk_size=1))

    def list(self, rel: str) -> list[str]:
        import obstore

        prefix = rel.strip("/")
        with self._errors(rel):
            found = obstore.list_with_delimiter(self.store, prefix or None)
        start = len(prefix) + 1 if prefix else 0
        names = [p[start:].rstrip("/") for p in found["common_prefixes"]]
        names += [o["path"][start:] for o in found["objects"]]
        return sorted(n for n in names if n)

    def remove_tree(self, rel: str) -> None:
        import obstore

        with self._errors(rel):
            paths = [o["path"] for batch in obstore.list(self.store, rel.strip("/") + "/") for o in batch]
            if self.exists(rel) and not paths:
                paths = [rel]
            if paths:
                obstore.delete(self.store, paths)

    def age(self, rel: str) -> float:
        """Seconds since an object, or the newest object under a prefix, was written."""
        import obstore

        try:
            with self._errors(rel):
                return time.time() - obstore.head(self.store, rel)["last_modified"].timestamp()
        except FileNotFoundError:
            with self._errors(rel):
                times = [
                    o["last_modified"].timestamp() for b in obstore.list(self.store, rel + "/") for o in b
                ]
            if not times:
                raise
            return time.time() - max(times)

    def sweep_temporaries(self) -> list[str]:
        return []  # a PUT replaces an object whole: no temporary objects exist


def open_store(root: str | Path) -> LocalStore | S3Store:
    text = str(root)
    if text.startswith("s3://"):
        return S3Store(text)
    if text.startswith("file://"):
        return LocalStore(Path(text[len("file://") :]))
    if "://" in text:
        raise StoreError(f"{text}: the registry lives in a directory or at an s3:// URL")
    return LocalStore(Path(text))
