"""`chiops pipeline decide` (python -m pipeline decide): the decision printed, exit 0/1/2, the lease on the
fake."""

from __future__ import annotations

import argparse
import json

import pytest

import chi_scripts
from pipeline.cli import main, register
from tests.chi.conftest import fake, make_inventory  # noqa: F401  (the fake Chameleon fixtures)

COMMIT = "c" * 40
BUSY = ["--code-commit", COMMIT, "--trained-commit", COMMIT, "--last-training", "2026-12-01T00:00:00Z"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_register_adds_the_pipeline_group():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pipeline", "decide", "--code-commit", COMMIT])
    assert args.func.__name__ == "cmd_decide"


def test_decisions_without_a_lease(capsys):
    code, out, _ = run(capsys, "decide", "--new-labels", "500", "--code-commit", COMMIT)
    assert code == 0 and out.startswith("retrain (triggers: new_data, schedule)")
    code, out, _ = run(capsys, "decide", "--json", "--drift", "0.01", *BUSY)
    assert code == 0 and json.loads(out)["action"] in ("skip", "retrain")
    code, out, _ = run(
        capsys, "decide", "--drift", "0.9", "--drift-disarmed", *BUSY, "--policy", "/nonexistent"
    )
    assert code == 2


def test_bad_input_is_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["decide", "--code-commit", COMMIT, "--last-training", "yesterday"])
    assert info.value.code == 2
    policy = tmp_path / "policy.yml"
    policy.write_text("min_new_label: 5\n")
    code, _, err = run(capsys, "decide", "--code-commit", COMMIT, "--policy", str(policy))
    assert code == 2 and "unknown pipeline policy keys" in err


def test_a_short_lease_extended_or_refused_on_chameleon(fake, make_inventory, capsys):  # noqa: F811
    inv = make_inventory(duration="20m")
    chi_scripts.reserve(inv)
    capsys.readouterr()
    code, out, _ = run(
        capsys, "decide", "--new-labels", "500", "--code-commit", COMMIT, "--inventory", str(inv)
    )
    assert code == 0 and "extend by" in out
    fake.config.extend_refusal = (
        "Not enough resources available with query [node_type == compute_cascadelake_r]"
    )
    argv = ["decide", "--new-labels", "500", "--code-commit", COMMIT, "--inventory", str(inv), "--extend"]
    code, out, err = run(capsys, *argv)
    assert code == 1 and "refuse (triggers" in out and "Not enough resources available" in err
    fake.config.extend_refusal = None
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "retrain (triggers" in out and "lease extended by" in out
    # extended: the next decision needs no extension
    code, out, _ = run(capsys, *argv[:-1])
    assert code == 0 and "extend by" not in out and "s left >=" in out


def test_no_lease_is_exit_1(fake, make_inventory, capsys):  # noqa: F811
    code, _, err = run(capsys, "decide", "--code-commit", COMMIT, "--inventory", str(make_inventory()))
    assert code == 1 and "no live lease" in err
