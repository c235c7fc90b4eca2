"""The shipped notebooks, executed headless (nbclient) against the fake with OIDC token auth, as on
Chameleon's JupyterHub."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.fake_chameleon.testing import assert_no_secret

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "chi_scripts" / "notebooks"


def run(name: str) -> str:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def test_notebooks_reserve_status_extend_release(fake, make_inventory, monkeypatch):
    for key in ("OS_USERNAME", "OS_PASSWORD", "OS_USER_DOMAIN_NAME"):
        monkeypatch.delenv(key)
    for key, value in fake.env("v3oidcaccesstoken").items():
        monkeypatch.setenv(key, value)
    inv = make_inventory()
    monkeypatch.setenv("CHIOPS_INVENTORY", str(inv))
    monkeypatch.setenv("CHIOPS_EXTEND_BY", "1d")

    out = run("01_reserve.ipynb")
    assert "Ready: 2 host(s)" in out and "ProxyJump" in out
    assert (inv / "hosts.yml").exists()
    assert fake.requests[
        ("POST", "/identity/v3/OS-FEDERATION/identity_providers/chameleon/protocols/openid/auth")
    ]
    lease = next(iter(fake.leases.values()))
    end_before = lease["end_date"]

    out = run("02_status_extend.ipynb")
    assert "ACTIVE" in out and "extended by 1d" in out
    assert lease["end_date"] > end_before

    out_release = run("03_release.ipynb")
    assert "Deleting lease" in out_release
    assert fake.snapshot() == {"leases": set(), "servers": set(), "fips": set()}
    assert_no_secret(out, out_release)
