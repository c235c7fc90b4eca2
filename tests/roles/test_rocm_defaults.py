"""The rocm role's defaults point at AMD's real repository with exact versions (Molecule overrides them)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "rocm" / "defaults" / "main.yml").read_text())


def test_repository_is_amds():
    assert DEFAULTS["rocm_repo_base_url"] == "https://repo.radeon.com"
    assert DEFAULTS["rocm_key_url"] == "{{ rocm_repo_base_url }}/rocm/rocm.gpg.key"
    assert DEFAULTS["rocm_pin_origin"] == "repo.radeon.com"
    assert DEFAULTS["rocm_pin_priority"] == 600


def test_versions_are_exact_and_paired():
    assert re.fullmatch(r"\d+\.\d+\.\d+", DEFAULTS["rocm_version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", DEFAULTS["rocm_amdgpu_version"])
    # ROCm 7.1.1 ships with amdgpu 30.20.1 and still supports MI100 (gfx908)
    assert (DEFAULTS["rocm_version"], DEFAULTS["rocm_amdgpu_version"]) == ("7.1.1", "30.20.1")


def test_kernel_packages_differ_per_distribution():
    vars_dir = ROOT / "roles" / "rocm" / "vars"
    ubuntu = [yaml.safe_load((vars_dir / f).read_text()) for f in ("Ubuntu-22.yml", "Ubuntu-24.yml")]
    debian = yaml.safe_load((vars_dir / "Debian-12.yml").read_text())
    assert [u["rocm_repo_codename"] for u in ubuntu] == ["jammy", "noble"]
    assert all(any("linux-modules-extra-" in p for p in u["rocm_kernel_packages"]) for u in ubuntu)
    assert debian["rocm_repo_codename"] == "jammy"
    assert not any("modules-extra" in p for p in debian["rocm_kernel_packages"])
