"""Where registry bytes live: a local directory (atomic renames, flock) or any fsspec URL (object storage)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from training.errors import TrainingError


class LockTimeout(TrainingError):
    pass


class LocalStore:
    """Local filesystem: index writes are write-temp + fsync + rename (readers see the old or the new file,
    never a mix); writers serialise on an flock that the kernel releases if the holder dies."""

    atomic = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, rel: str) -> str:
        return str(self.root / rel)

    def read_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def list_dir(self, rel: str) -> list[str]:
        path = self.root / rel
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def makedirs(self, rel: str) -> None:
        (self.root / rel).mkdir(parents=True, exist_ok=True)

    def _fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_atomic(self, rel: str, data: bytes) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        self._fsync_dir(target.parent)

    def put_file(self, src: Path, rel: str) -> None:
        """Stream-copy (also works when src is a pipe) and fsync, so a published version is on disk."""
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fin, open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 16)
            fout.flush()
            os.fsync(fout.fileno())

    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def publish_dir(self, tmp_rel: str, final_rel: str) -> None:
        final = self.root / final_rel
        if final.exists():
            raise FileExistsError(f"{final} exists; versions are immutable")
        os.rename(self.root / tmp_rel, final)
        self._fsync_dir(final.parent)

    def remove_tree(self, rel: str) -> None:
        path = self.root / rel
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def mtime(self, rel: str) -> float:
        return (self.root / rel).stat().st_mtime

    @contextlib.contextmanager
    def lock(self, timeout: float = 120.0) -> Iterator[None]:
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
                        raise LockTimeout(
                            f"registry {self.root} is locked by another writer for {timeout:.0f} s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class FsspecStore:
    """Object storage through fsspec (e.g. s3://, Chameleon's Swift via its S3 API). A single PUT replaces an
    object whole, so readers still see an old or new index.json; there is no cross-process lock, so exactly one
    writer (the Ansible controller) may change a registry at a time. Version directories are copied then
    published by a non-atomic move; they only become visible once index.json names them."""

    atomic = False

    def __init__(self, url: str, **options: Any) -> None:
        import fsspec

        self.fs, self.base = fsspec.core.url_to_fs(url, **options)
        self.protocol = url.split("://", 1)[0]
        self.base = self.base.rstrip("/")

    def _p(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def url(self, rel: str) -> str:
        return (
            f"{self.protocol}://{self._p(rel).lstrip('/')}"
            if self.protocol != "memory"
            else f"memory://{self._p(rel)}"
        )

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._p(rel))

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._p(rel))

    def list_dir(self, rel: str) -> list[str]:
        if not self.fs.exists(self._p(rel)):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._p(rel), detail=False))

    def makedirs(self, rel: str) -> None:
        self.fs.makedirs(self._p(rel), exist_ok=True)

    def write_atomic(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._p(rel), data)

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._p(rel), data)

    def put_file(self, src: Path, rel: str) -> None:
        with open(src, "rb") as fin, self.fs.open(self._p(rel), "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 16)

    def publish_dir(self, tmp_rel: str, final_rel: str) -> None:
        if self.fs.exists(self._p(final_rel)):
            raise FileExistsError(f"{self.url(final_rel)} exists; versions are immutable")
        self.fs.mv(self._p(tmp_rel), self._p(final_rel), recursive=True)

    def remove_tree(self, rel: str) -> None:
        if self.fs.exists(self._p(rel)):
            self.fs.rm(self._p(rel), recursive=True)

    def mtime(self, rel: str) -> float:
        # Object stores have no directory times: treat leftovers as fresh, so only `gc --min-age 0` removes them.
        return time.time()

    @contextlib.contextmanager
    def lock(self, timeout: float = 120.0) -> Iterator[None]:
        yield


def open_store(root: str | Path) -> LocalStore | FsspecStore:
    text = str(root)
    if text.startswith("file://"):
        return LocalStore(Path(text[len("file://") :]))
    if "://" in text:
        return FsspecStore(text)
    return LocalStore(Path(text))
