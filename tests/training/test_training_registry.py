"""The registry: contract layout, alias moves, gate refusals, concurrent writers, writers killed mid-write."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from training.cli import main
from training.gate import Gate
from training.registry import ALIASES, AliasConflict, GateRefused, Registry, RegistryError, RegistryInputError

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def registry(tmp_path, reference_run, weak_run):
    """A registry holding v1 (reference, production) and v2 (weak, registered without a gate)."""
    reg = Registry(tmp_path / "registry")
    assert reg.register(reference_run.artifact_dir, Gate(0.97, 0.01), ["production"])[0] == "v1"
    assert reg.register(weak_run.artifact_dir, None)[0] == "v2"
    return reg


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_layout_matches_the_contract(registry, reference_run):
    root = Path(registry.root)
    index = json.loads((root / "index.json").read_text())
    assert set(index["versions"]) == {"v1", "v2"}
    assert index["aliases"] == {"staging": None, "canary": None, "production": "v1", "previous": None}
    for name in ("model.ts", "state_dict.pt", "card.json", "card.md", "test_split.npz"):
        assert (root / "versions" / "v1" / name).is_file(), name
    card = json.loads((root / "versions" / "v1" / "card.json").read_text())
    assert card["version"] == "v1" and card["gate"]["passed"] is True
    assert card["metrics"] == reference_run.card["metrics"]
    # what serving does, with nothing from training: load the TorchScript, feed raw pixels, get logits
    with np.load(root / "versions" / "v1" / "test_split.npz") as npz:
        images, labels = npz["images"], npz["labels"]
    assert images.dtype == np.float32 and images.shape[1:] == (8, 8) and labels.dtype == np.int64
    model = torch.jit.load(str(root / "versions" / "v1" / "model.ts"))
    logits = model(torch.from_numpy(images).unsqueeze(1))
    assert logits.shape == (len(labels), 10)
    assert float((logits.argmax(1).numpy() == labels).mean()) == card["metrics"]["accuracy"]
    assert registry.verify() == []


def test_resolve_and_its_exit_codes(registry, capsys):
    assert registry.resolve("production") == "v1" and registry.resolve("v2") == "v2"
    assert registry.resolve("canary") is None
    assert main(["registry", "resolve", "production", "--registry", registry.root]) == 0
    assert capsys.readouterr().out.strip() == "v1"
    assert main(["registry", "resolve", "production", "--path", "--registry", registry.root]) == 0
    assert capsys.readouterr().out.strip() == str(Path(registry.root) / "versions" / "v1")
    assert main(["registry", "resolve", "canary", "--registry", registry.root]) == 1
    assert "alias canary is not set" in capsys.readouterr().err
    assert main(["registry", "resolve", "v9", "--registry", registry.root]) == 2
    assert main(["registry", "resolve", "prod", "--registry", registry.root]) == 2


def test_promote_rollback_and_multi_alias_moves(registry, capsys):
    assert registry.set_alias("canary", "v2") == {"canary": [None, "v2"]}
    changes = registry.promote("v2", reason="canary passed")
    assert changes == {"production": ["v1", "v2"], "previous": [None, "v1"], "canary": ["v2", None]}
    assert registry.rollback("online accuracy dropped") == {
        "production": ["v2", "v1"],
        "previous": ["v1", None],
    }
    # several aliases in one step, one of them moved to where another alias points
    registry.move_aliases({"staging": "v2", "canary": "production"})
    assert registry.index()["aliases"] == {
        "staging": "v2",
        "canary": "v1",
        "production": "v1",
        "previous": None,
    }
    events = [(h["event"], h["reason"]) for h in registry.history()]
    assert events[-4:] == [
        ("promote", "canary passed"),
        ("rollback", "online accuracy dropped"),
        ("alias", ""),
        ("alias", ""),
    ][-4:] or events[-3:] == [
        ("promote", "canary passed"),
        ("rollback", "online accuracy dropped"),
        ("alias", ""),
    ]
    assert main(["registry", "alias", "staging=none", "canary=v2", "--registry", registry.root]) == 0
    assert registry.index()["aliases"]["canary"] == "v2" and registry.index()["aliases"]["staging"] is None


def test_expectations_guard_against_concurrent_changes(registry):
    before = registry.index()
    with pytest.raises(AliasConflict, match="production is v1, expected v2"):
        registry.move_aliases({"production": "v2", "previous": "v1"}, expect={"production": "v2"})
    with pytest.raises(AliasConflict):
        registry.promote("v2", expect_production=None)
    after = registry.index()
    assert after["aliases"] == before["aliases"] and after["generation"] == before["generation"]
    assert main(["registry", "promote", "v2", "--expect-production", "v2", "--registry", registry.root]) == 1


def test_bad_alias_moves_change_nothing(registry):
    before = registry.index()
    with pytest.raises(RegistryInputError, match="unknown alias 'prod'"):
        registry.move_aliases({"canary": "v2", "prod": "v2"})
    with pytest.raises(RegistryInputError, match="no version v7"):
        registry.move_aliases({"canary": "v2", "staging": "v7"})
    with pytest.raises(RegistryError, match="previous is not set"):
        registry.rollback()
    assert registry.index() == before


def test_gate_refuses_below_the_minimum_accuracy(tmp_path, weak_run, capsys):
    reg = Registry(tmp_path / "r")
    with pytest.raises(GateRefused) as err:
        reg.register(weak_run.artifact_dir, Gate(min_accuracy=0.97))
    accuracy = weak_run.card["metrics"]["accuracy"]
    assert f"accuracy {accuracy:.4f} is below the minimum 0.9700" in str(err.value)
    assert reg.index()["versions"] == {} and not list((tmp_path / "r").glob("versions/*"))
    assert reg.history()[-1]["event"] == "refused"
    code = main(
        ["registry", "register", str(weak_run.artifact_dir), "--min-accuracy", "0.97", "--registry", reg.root]
    )
    assert code == 1 and "below the minimum" in capsys.readouterr().err


def test_gate_refuses_a_model_much_worse_than_production(registry, weak_run, reference_run):
    weak, ref = weak_run.card["metrics"]["accuracy"], reference_run.card["metrics"]["accuracy"]
    assert ref - weak > 0.05, "the weak fixture must be clearly worse for this test to mean anything"
    with pytest.raises(GateRefused) as err:
        registry.register(weak_run.artifact_dir, Gate(min_accuracy=0.0, max_drop=0.01))
    decision = err.value.decision
    assert decision.measured["production_version"] == "v1"
    assert decision.measured["production_accuracy"] == pytest.approx(ref)
    assert decision.measured["same_split_as_production"] is True
    assert "below production v1's" in str(err.value) and "allowed drop 0.0100" in str(err.value)
    # the same candidate passes a gate lenient enough for it, as the demo's noisy model must
    version, decision = registry.register(weak_run.artifact_dir, Gate(min_accuracy=0.0, max_drop=1.0))
    assert version == "v3" and decision.passed


def test_gate_refuses_artifacts_that_do_not_belong_together(tmp_path, reference_run):
    art = tmp_path / "art"
    shutil.copytree(reference_run.artifact_dir, art)
    card = json.loads((art / "card.json").read_text())
    card["metrics"]["accuracy"] = 0.5
    (art / "card.json").write_text(json.dumps(card))
    with pytest.raises(GateRefused, match="do not belong together"):
        Registry(tmp_path / "r").register(art, Gate())


def test_register_rejects_incomplete_artifacts(tmp_path, reference_run):
    art = tmp_path / "art"
    shutil.copytree(reference_run.artifact_dir, art)
    (art / "model.ts").unlink()
    with pytest.raises(RegistryInputError, match=r"lacks model.ts"):
        Registry(tmp_path / "r").register(art)
    assert main(["registry", "register", str(art), "--registry", str(tmp_path / "r")]) == 2


def test_versions_are_never_reused(registry, reference_run):
    # a writer that died after publishing v3's directory but before listing it in index.json
    shutil.copytree(Path(registry.root) / "versions" / "v1", Path(registry.root) / "versions" / "v3")
    assert any("v3 is not listed" in p for p in registry.verify())
    assert registry.register(reference_run.artifact_dir)[0] == "v4"


def test_fsspec_root_works_end_to_end(reference_run, weak_run):
    url = f"memory://chiops-{uuid.uuid4().hex}"
    reg = Registry(url)
    assert reg.register(reference_run.artifact_dir, Gate(0.97, 0.01), ["production"])[0] == "v1"
    with pytest.raises(GateRefused):
        reg.register(weak_run.artifact_dir, Gate(0.0, 0.01))
    assert reg.register(weak_run.artifact_dir, None, ["canary"])[0] == "v2"
    reg.promote("v2")
    assert reg.index()["aliases"] == {"staging": None, "canary": None, "production": "v2", "previous": "v1"}
    assert reg.card("previous")["metrics"]["accuracy"] == reference_run.card["metrics"]["accuracy"]
    assert reg.version_url("production").endswith("/versions/v2")
    assert reg.verify() == []


WRITER = """
import random, sys
from training.registry import Registry
reg, n, seed = Registry(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
for i in range(n):
    alias = rng.choice(["staging", "canary"])
    reg.move_aliases({alias: rng.choice(["v1", "v2", None])}, reason=f"writer {seed} move {i}")
"""


def test_concurrent_alias_updates_lose_nothing(registry):
    start = registry.index()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, registry.root, "25", str(seed)], env=ENV)
        for seed in range(4)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    index = registry.index()
    reasons = [h["reason"] for h in index["history"] if h["event"] == "alias"]
    assert sorted(reasons) == sorted(f"writer {s} move {i}" for s in range(4) for i in range(25))
    assert index["generation"] == start["generation"] + 100
    assert index["aliases"]["production"] == "v1"
    assert set(index["aliases"]) == set(ALIASES)
    assert registry.verify() == []


LOOPER = """
import itertools, sys
from training.registry import Registry
reg = Registry(sys.argv[1])
for i in itertools.count():
    reg.move_aliases({"staging": "v1" if i % 2 else "v2", "canary": None if i % 3 else "v2"}, reason=f"loop {i}")
"""


def test_writers_killed_at_random_moments_leave_a_readable_index(registry):
    rng = random.Random(7)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", LOOPER, registry.root], env=ENV)
        time.sleep(rng.uniform(1.0, 2.5))  # past interpreter start-up, into the write loop
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        index = json.loads((Path(registry.root) / "index.json").read_text())
        assert index["aliases"]["production"] == "v1"
        assert index["aliases"]["staging"] in ("v1", "v2", None)
        assert registry.verify() == []
    loops = [h for h in registry.history() if h["reason"].startswith("loop")]
    assert loops, "the writer never wrote: the test killed it too early to mean anything"
    registry.gc()
    assert not [p for p in Path(registry.root).iterdir() if ".tmp-" in p.name]
    # the lock died with its holder: a new writer is not blocked
    registry.set_alias("staging", None)


def test_register_killed_mid_copy_leaves_the_previous_state(registry, reference_run, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(reference_run.artifact_dir, art)
    (art / "state_dict.pt").unlink()
    os.mkfifo(art / "state_dict.pt")  # the copy reads what this test feeds it: a write as slow as we like
    before = (Path(registry.root) / "index.json").read_bytes()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training",
            "registry",
            "register",
            str(art),
            "--no-gate",
            "--registry",
            registry.root,
        ],
        env=ENV,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # a FIFO opens for writing only once the registering process opened it for reading
            try:
                fd = os.open(art / "state_dict.pt", os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert proc.poll() is None, "register exited before reading the artifacts"
                assert time.monotonic() < deadline
                time.sleep(0.05)
        os.set_blocking(fd, True)
        os.write(fd, b"x" * 100_000)  # more than one 64 KiB copy chunk: the first lands, the second waits
        versions = Path(registry.root) / "versions"
        while not [p for p in versions.glob(".tmp-*/state_dict.pt") if p.stat().st_size > 0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        os.close(fd)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (Path(registry.root) / "index.json").read_bytes() == before
    assert registry.resolve("production") == "v1" and set(registry.index()["versions"]) == {"v1", "v2"}
    assert any("unfinished write" in p for p in registry.verify())
    assert registry.gc() and registry.verify() == []
    assert registry.register(reference_run.artifact_dir)[0] == "v3"
