"""The one `chiops` command: every CLI module under one parser, exit codes, lazy imports, the launcher."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from chiops import __version__, cli

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / ".venv" / "bin" / "chiops"  # as called through this checkout's .venv link
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def chiops(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chiops", *args],
        cwd=cwd,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def subcommands(parser) -> dict:
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return actions[0].choices if actions else {}


def test_one_parser_holds_every_command_and_every_leaf_has_a_handler():
    top = cli.parser()
    commands = subcommands(top)
    assert {"reserve", "status", "extend", "release", "inventory", "train", "registry"} <= set(commands)
    assert {"show", "resolve", "alias", "promote", "rollback", "history"} <= set(
        subcommands(commands["registry"])
    )

    def leaves(parser, path):
        children = subcommands(parser)
        if not children:
            yield path, parser
        for name, child in children.items():
            yield from leaves(child, [*path, name])

    found = list(leaves(top, []))
    assert len(found) >= 16
    for path, leaf in found:
        assert callable(leaf.get_default("func")), f"chiops {' '.join(path)} has no handler"


def test_help_on_every_level_and_version():
    for args in (
        ["--help"],
        ["reserve", "--help"],
        ["registry", "--help"],
        ["registry", "promote", "--help"],
    ):
        proc = chiops(*args)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("usage: chiops")
    assert "exit codes" in chiops("--help").stdout
    with open(ROOT / "pyproject.toml", "rb") as fh:
        assert tomllib.load(fh)["project"]["dynamic"] == ["version"]
    proc = chiops("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"chiops {__version__}"


def test_exit_codes_usage_input_and_failure(tmp_path):
    unknown = chiops("nosuch")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    missing = chiops("reserve")
    assert missing.returncode == 2 and "--inventory" in missing.stderr
    bad_input = chiops("registry", "alias", "production", "--registry", str(tmp_path / "registry"))
    assert bad_input.returncode == 2 and "ALIAS=REF" in bad_input.stderr
    unset = chiops("registry", "resolve", "production", "--registry", str(tmp_path / "registry"))
    assert unset.returncode == 1 and "production" in unset.stderr


def test_help_imports_no_heavy_library():
    """`chiops --help` must not pay for python-chi, OpenStack, Ray or torch (seconds each to import)."""
    code = (
        "import sys, contextlib, io\n"
        "import chiops.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    chiops.cli.main(['--help'])\n"
        "heavy = ('chi', 'openstack', 'blazarclient', 'ray', 'torch')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]"


def test_python_m_chi_scripts_keeps_working():
    proc = subprocess.run(
        [sys.executable, "-m", "chi_scripts", "status", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "usage: python -m chi_scripts status" in proc.stdout


@pytest.mark.skipif(
    importlib.util.find_spec("rollout.cli") is None,
    reason="rollout.cli is not on this branch yet (engine writes it)",
)
def test_rollout_group_is_under_chiops():
    verbs = {"start", "status", "pause", "resume", "promote", "abort", "history", "plan", "rollback"}
    assert verbs <= set(subcommands(subcommands(cli.parser())["rollout"]))
    proc = chiops("rollout", "--help")
    assert proc.returncode == 0 and "usage: chiops rollout" in proc.stdout


def fake_checkout(path: Path, marker: str) -> Path:
    (path / "chiops").mkdir(parents=True)
    (path / "pyproject.toml").write_text('[project]\nname = "chiops"\n')
    (path / "chiops" / "__init__.py").write_text("")
    (path / "chiops" / "cli.py").write_text(f"def main():\n    print({marker!r})\n    return 0\n")
    return path


def launcher(exe: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHIOPS_ROOT")}
    return subprocess.run(
        [str(exe), "--version"], cwd=cwd, env={**clean, **env}, capture_output=True, text=True
    )


def test_the_shared_venv_runs_the_code_of_the_checkout_it_is_called_from(tmp_path):
    assert LAUNCHER.is_file(), "tools/venv.sh installs .venv/bin/chiops (make venv)"
    other = fake_checkout(tmp_path / "other", "the other checkout ran")
    # Through this checkout's .venv link: this checkout, wherever the call is made from.
    mine = launcher(LAUNCHER, cwd=other)
    assert mine.returncode == 0 and mine.stdout.strip() == f"chiops {__version__}", mine.stderr
    # The same installed command, called by its real path in the shared cache: the checkout around the cwd.
    shared = LAUNCHER.resolve()
    assert shared != LAUNCHER
    assert launcher(shared, cwd=other / "chiops").stdout.strip() == "the other checkout ran"
    assert launcher(shared, cwd=tmp_path, CHIOPS_ROOT=str(other)).stdout.strip() == "the other checkout ran"
    # No checkout anywhere: exit 2 with the reason, never some other checkout's code.
    lost = launcher(shared, cwd=tmp_path)
    assert lost.returncode == 2 and "CHIOPS_ROOT" in lost.stderr
    wrong = launcher(shared, cwd=other, CHIOPS_ROOT=str(tmp_path))
    assert wrong.returncode == 2 and "is not a ChiOps checkout" in wrong.stderr
