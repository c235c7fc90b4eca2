"""Spec validation (exit 2, naming the key and the file) and the CLI's import laziness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chi_scripts import cli
from chi_scripts.errors import SpecError
from chi_scripts.spec import load_target, parse_duration

REPO = Path(__file__).resolve().parents[2]

GOOD = {
    "lease_name": "chiops-x",
    "duration": "8h",
    "image": "CC-Ubuntu24.04",
    "key_name": "chiops",
    "nodes": [
        {"name": "control", "node_type": "compute_cascadelake_r", "floating_ip": True, "groups": ["etcd"]}
    ],
}


def write(tmp_path, data, env="staging") -> Path:
    inv = tmp_path / env
    inv.mkdir(parents=True, exist_ok=True)
    (inv / "chameleon.yml").write_text(yaml.safe_dump(data))
    return inv


def test_repository_specs_load():
    staging = load_target(REPO / "inventories/staging")
    assert staging.spec.lease_name == "chiops-staging" and staging.shared_from is None
    gpu = next(g for g in staging.spec.nodes if "gpu_amd" in g.groups)
    assert (gpu.node_type, gpu.image) == ("gpu_mi100", "CC-Ubuntu24.04-ROCm")
    control = next(g for g in staging.spec.nodes if g.floating_ip)
    assert control.node_type == "compute_cascadelake_r"
    canary = load_target(REPO / "inventories/canary")
    production = load_target(REPO / "inventories/production")
    assert canary.shared_from == "production"
    assert canary.spec.lease_name == production.spec.lease_name != staging.spec.lease_name
    assert [d.name for d in canary.inventory_dirs] == ["production", "canary"]


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.update(duration="8 hours"), "duration"),
        (lambda d: d.update(duration="0h"), "duration"),
        (lambda d: d.pop("key_name"), "key_name"),
        (lambda d: d["nodes"][0].pop("node_type"), "nodes[0].node_type"),
        (lambda d: d["nodes"][0].update(count=0), "nodes[0].count"),
        (lambda d: d["nodes"][0].update(flavour="x"), "nodes[0].flavour"),
        (lambda d: d["nodes"][0].update(floating_ip="yes"), "nodes[0].floating_ip"),
        (lambda d: d["nodes"][0].update(floating_ip=False), "nodes"),
        (lambda d: d.update(timeouts={"lease": "soon"}), "timeouts.lease"),
        (lambda d: d.update(ssh_port=70000), "ssh_port"),
    ],
)
def test_bad_spec_names_key_and_file(tmp_path, mutate, key):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(data)
    inv = write(tmp_path, data)
    with pytest.raises(SpecError) as err:
        load_target(inv)
    assert str(inv / "chameleon.yml") in str(err.value)
    assert key in str(err.value)


def test_shared_with_rules(tmp_path):
    write(tmp_path, GOOD, env="production")
    inv = write(tmp_path, {"shared_with": "production", "duration": "1h"}, env="canary")
    with pytest.raises(SpecError, match="duration"):
        load_target(inv)
    inv = write(tmp_path, {"shared_with": "nowhere"}, env="canary")
    with pytest.raises(SpecError, match="nowhere"):
        load_target(inv)


@pytest.mark.parametrize(
    ("text", "seconds"), [("8h", 28800), ("1d", 86400), ("90m", 5400), ("1d12h", 129600)]
)
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


def test_cli_exit_2_for_bad_spec(tmp_path, capsys):
    data = dict(GOOD, colour="blue")
    inv = write(tmp_path, data)
    assert cli.main(["reserve", "--inventory", str(inv)]) == 2
    err = capsys.readouterr().err
    assert "colour" in err and str(inv / "chameleon.yml") in err
    assert cli.main(["extend", "--inventory", str(write(tmp_path, GOOD)), "--by", "soon"]) == 2
    assert "--by" in capsys.readouterr().err


def test_cli_usage_error_is_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["reserve"])
    assert exc.value.code == 2


def test_help_does_not_import_python_chi():
    """python-chi costs seconds to import; --help and the package import must not pay for it."""
    code = (
        "import sys, contextlib, io\n"
        "import chi_scripts, chi_scripts.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    chi_scripts.cli.main(['--help'])\n"
        "assert 'reserve' in out.getvalue()\n"
        "print(sorted(m for m in sys.modules if m == 'chi' or "
        "m.startswith(('chi.', 'openstack', 'blazarclient'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
