"""Fixtures for chi_scripts tests: a running fake of the Chameleon APIs and throwaway inventories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.fake_chameleon import FakeChameleon, FakeConfig
from tests.fake_chameleon.testing import SECRET_APP_SECRET, SECRET_OIDC, SECRET_PASSWORD, spec_dict
from tests.ports import free_port


@pytest.fixture
def fake(monkeypatch):
    """A fresh fake (sub-second transitions) with OS_* pointing at it (password auth)."""
    config = FakeConfig(
        ssh_port=free_port(),
        password=SECRET_PASSWORD,
        app_cred_secret=SECRET_APP_SECRET,
        oidc_access_token=SECRET_OIDC,
    )
    server = FakeChameleon(config).start()
    for key in list(os.environ):
        if key.startswith("OS_") or key == "CHIOPS_INVENTORY":
            monkeypatch.delenv(key)
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    yield server
    server.stop()
    assert not server.errors, f"the fake itself failed: {server.errors}"


@pytest.fixture
def make_inventory(tmp_path, fake):
    """make_inventory(env="staging", **spec overrides) -> inventory dir with chameleon.yml."""

    def make(env: str = "staging", raw: dict | None = None, **overrides) -> Path:
        inv = tmp_path / "inventories" / env
        inv.mkdir(parents=True, exist_ok=True)
        data = raw if raw is not None else spec_dict(fake, **overrides)
        (inv / "chameleon.yml").write_text(yaml.safe_dump(data, sort_keys=False))
        return inv

    return make
