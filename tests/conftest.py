"""Fixtures shared across test packages: the real S3-compatible server the registry's tests run against."""

from __future__ import annotations

import os
import sys

import pytest

from serving.deploy import LOOPBACK_ENV
from tests.s3_server import SeaweedS3, new_bucket_url

# Set before any test imports Ray, so a Ray started in-process (serving.deploy.init_local_ray) stays on
# loopback.
os.environ.setdefault(LOOPBACK_ENV, "0")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """SeaweedFS on 127.0.0.1 for the whole session; its credentials are in os.environ meanwhile, so the
    registry (and subprocesses the tests start) reach it exactly as they would reach Chameleon's store."""
    server = SeaweedS3(tmp_path_factory.mktemp("s3")).start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(params=["dir", "s3"])
def registry_url(request, tmp_path):
    """An empty registry root: a local directory, then a fresh bucket on the S3 server."""
    if request.param == "dir":
        return str(tmp_path / "registry")
    request.getfixturevalue("s3_server")
    return new_bucket_url()


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End a session that ran Ray in this process without the interpreter's finalisation. After ray.shutdown()
    threads of Ray's C++ core can still run while the interpreter tears modules down; in CI (2026-12-01) the
    process segfaulted after every result was reported (the kernel logged a jump to an unmapped address), and
    a finished run became a failed one. Every report is written by now: only the exit status is left."""
    if "ray" not in sys.modules or _EXIT_STATUS not in config.stash:
        return
    trained = sys.modules.get("tests.trained_registry")
    if trained is not None:
        trained.cleanup()  # its atexit hook will not run
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS])


_EXIT_STATUS = pytest.StashKey[int]()
