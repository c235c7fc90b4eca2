"""`chiops pipeline run` without a platform: usage errors, the run lock, the history that carries cooldown,
budget and hysteresis, and a decided skip that writes its report (a real trained registry and a real SQLite
store). The whole chain (train, register, roll out) runs on the real local platform in
tests/rollout/test_rollout_live.py."""

from __future__ import annotations

import fcntl
import json
import time

import numpy as np
import pytest
import yaml

from model_registry import Registry
from pipeline import history
from pipeline.cli import main
from serving.feedback_store import Feedback, image_bytes, open_store
from tests.trained_registry import build_registry


@pytest.fixture
def registry(tmp_path):
    # trained once per test process (tests/trained_registry.py), registered afresh for each test
    return str(build_registry(tmp_path / "registry", versions=((0, 2),), aliases={"production": "v1"}))


@pytest.fixture
def setup(tmp_path, registry):
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps({"backend": "local", "registry": registry, "state_dir": str(tmp_path / "r")})
    )
    store = f"sqlite:///{tmp_path / 'feedback.db'}"
    s = open_store(store)
    for i in range(5):
        image = np.full((8, 8), i, dtype=np.float32)
        s.add(Feedback(f"p{i}", image_bytes(image), i, i, "production", "v1", time.time(), time.time()))
    policy = tmp_path / "policy.yml"
    policy.write_text(yaml.safe_dump({"min_new_labels": 100, "schedule_s": None, "cooldown_s": 0}))
    argv = ["run", "--settings", str(settings), "--config", "training/configs/digits.yaml"]
    # the commit production's model was trained from: no code trigger
    commit = Registry(registry).card("v1")["git_commit"]
    argv += ["--feedback-store", store, "--code-commit", commit, "--policy", str(policy)]
    return tmp_path, argv


def test_a_run_with_no_trigger_skips_writes_its_report_and_its_record(setup, capsys):
    tmp_path, argv = setup
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "pipeline: skip (triggers: none)" in out
    state = tmp_path / "r" / "pipeline"
    [report_file] = state.glob("*/report.json")
    report = json.loads(report_file.read_text())
    assert report["outcome"] == "skipped"
    assert report["signals"]["new_labels"] == 5 and report["models"]["production"]["version"] == "v1"
    assert "Pipeline run" in (report_file.parent / "report.md").read_text()
    [record] = history.read(state)
    assert record["outcome"] == "skipped" and record["trained"] is False and record["drift_armed"] is True


def test_the_history_carries_trainings_and_hysteresis():
    runs = [
        {"time": 100.0, "trained": True, "drift_armed": True},
        {"time": 200.0, "trained": False, "drift_armed": True},
        {"time": 300.0, "trained": True, "drift_armed": False},
    ]
    assert history.trainings(runs) == (100.0, 300.0)
    assert history.drift_armed(runs) is False
    assert history.drift_armed([]) is True


def test_a_damaged_history_stops_the_run_naming_the_line(setup, capsys):
    tmp_path, argv = setup
    state = tmp_path / "r" / "pipeline"
    history.append(state, {"time": 1.0, "drift_armed": True})
    with open(state / history.FILE, "a") as f:
        f.write("not json\n")
    assert main(argv) == 1
    assert f"{state / history.FILE}:2 is not a pipeline run record" in capsys.readouterr().err


def test_one_run_at_a_time(setup, capsys):
    tmp_path, argv = setup
    state = tmp_path / "r" / "pipeline"
    state.mkdir(parents=True)
    with open(state / "run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(argv) == 1
    assert "another pipeline run holds" in capsys.readouterr().err
    assert not (state / history.FILE).exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda argv: argv.__setitem__(argv.index("--config") + 1, "nope.yaml"), "no training config"),
        (lambda argv: argv.__setitem__(argv.index("--settings") + 1, "/nonexistent"), "cannot read settings"),
    ],
)
def test_bad_input_is_exit_2(setup, capsys, change, message):
    _, argv = setup
    change(argv)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_settings_without_a_state_dir_need_one_given(setup, capsys):
    tmp_path, argv = setup
    settings = json.loads((tmp_path / "settings.json").read_text())
    del settings["state_dir"]
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    assert main(argv) == 2
    assert "give --state-dir" in capsys.readouterr().err
    assert main([*argv, "--state-dir", str(tmp_path / "given")]) == 0
    assert (tmp_path / "given" / history.FILE).exists()


def test_no_production_model_is_a_failed_run(setup, tmp_path_factory, capsys):
    tmp_path, argv = setup
    empty = build_registry(tmp_path_factory.mktemp("empty") / "registry", versions=((0, 2),), aliases={})
    settings = json.loads((tmp_path / "settings.json").read_text())
    (tmp_path / "settings.json").write_text(json.dumps({**settings, "registry": str(empty)}))
    assert main(argv) == 1
    assert "no 'production' alias" in capsys.readouterr().err
