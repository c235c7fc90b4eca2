"""The GitOps backend's writes against real git: a bare desired-state repository on disk stands for the remote
ArgoCD follows; the user's source checkout (with its own remote) sits beside it and must never move.
The waits against a real API server are in tests/cluster/test_gitops_waits.py."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from rollout.backend import Backend, BackendError
from rollout.backends import load
from rollout.backends.gitops import DesiredStateRepo, rayservice_state, route_state
from tests.trained_registry import build_registry


def git(repo, *args) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    return build_registry(root, versions=((0, 1), (1, 1)), aliases={"production": "v1"})


@pytest.fixture
def world(tmp_path, registry, monkeypatch):
    remote = tmp_path / "desired-state.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    # the user's source checkout, where the rollout is run from, with a remote of its own
    source_remote = tmp_path / "source.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(source_remote))
    source = tmp_path / "source"
    git(tmp_path, "clone", "-q", str(source_remote), str(source))
    (source / "train.py").write_text("print('work in progress')\n")
    git(source, "add", "train.py")
    git(source, "commit", "-q", "-m", "local work, not pushed")
    monkeypatch.chdir(source)
    settings = {
        "chiops_desired_state_repo": str(remote),
        "chiops_desired_state_dir": str(tmp_path / "clone"),
        "chiops_registry": str(registry),
    }
    return remote, source, source_remote, settings


def files_of(remote, commit) -> set[str]:
    return set(git(remote, "show", "--name-only", "--format=", commit).splitlines())


def committed(remote, path):
    return yaml.safe_load(git(remote, "show", f"main:{path}"))


def backend_refs(remote):
    route = committed(remote, "environments/production/public-httproute.yaml")
    return [(ref["name"], ref["weight"]) for ref in route["spec"]["rules"][0]["backendRefs"]]


def test_a_rollout_walks_the_desired_state_repository(world):
    remote, source, source_remote, settings = world
    source_head = git(source, "rev-parse", "HEAD")
    backend = load("kubernetes", settings)
    assert isinstance(backend, Backend) and backend.name == "gitops"

    production = backend.deploy("production", "v1")
    staging = backend.deploy("staging", "v2")
    canary = backend.deploy("canary", "v2")
    # every change is one pushed commit touching only its environment
    assert git(remote, "rev-parse", "main") == canary.commit
    assert {p.split("/")[1] for p in files_of(remote, staging.commit)} == {"staging"}
    assert {p.split("/")[1] for p in files_of(remote, canary.commit)} == {"canary"}
    assert "environments/production/public-httproute.yaml" in files_of(remote, production.commit)
    assert backend_refs(remote) == [("chiops-production-serve-svc", 100)]

    split = backend.set_split("v1", "v2", 0.25)
    assert split.commit == git(remote, "rev-parse", "main")
    assert files_of(remote, split.commit) == {"environments/production/public-httproute.yaml"}
    assert backend_refs(remote) == [("chiops-production-serve-svc", 75), ("chiops-canary-serve-svc", 25)]
    # production's own version did not change with the split, and a deploy keeps the split
    assert committed(remote, "environments/production/rayservice.yaml")["metadata"]["labels"][
        "chiops.io/model-version"
    ] == ("v1")
    with pytest.raises(BackendError, match="set the split to 0 first"):
        backend.remove("canary")
    with pytest.raises(BackendError, match="canary serves v2 in git, not v1"):
        backend.set_split("v2", "v1", 0.5)

    back = backend.set_split("v1", None, 0.0)
    assert backend_refs(remote) == [("chiops-production-serve-svc", 100)]
    removed = backend.remove("canary")
    assert files_of(remote, removed.commit) == {
        f"environments/canary/{f}"
        for f in (
            "httproute.yaml",
            "namespace.yaml",
            "networkpolicy.yaml",
            "rayservice.yaml",
            "referencegrant.yaml",
        )
    }
    tree = git(remote, "ls-tree", "--name-only", "main", "environments/")
    assert tree.splitlines() == ["environments/production", "environments/staging"]
    # idempotent: nothing new to commit, and the Change names the commit that holds the state
    again = backend.remove("canary")
    assert again.commit is None and git(remote, "rev-parse", "main") == removed.commit
    same = backend.deploy("staging", "v2")
    assert same.commit == staging.commit and "already so" in same.description
    assert back.commit != split.commit

    # the user's checkout and its remote never moved
    assert git(source, "rev-parse", "HEAD") == source_head
    assert git(source, "status", "--porcelain") == ""
    assert git(source_remote, "for-each-ref") == ""


def test_a_push_that_is_not_a_fast_forward_fails_and_pushes_nothing(world, tmp_path):
    remote, _, _, settings = world
    backend = load("kubernetes", settings)
    backend.deploy("staging", "v1")

    ours = DesiredStateRepo(str(remote), "main", tmp_path / "ours")
    ours.sync()
    ours.environment_dir("staging").joinpath("namespace.yaml").write_text("# ours\n")
    assert ours.commit("staging", "ours") is not None
    # meanwhile another rollout pushed
    theirs = backend.deploy("staging", "v2")

    with pytest.raises(BackendError, match="not a fast-forward"):
        ours.push()
    assert git(remote, "rev-parse", "main") == theirs.commit
    assert ours.head() == theirs.commit  # the clone holds no stray commit for the next call


def test_bad_requests_are_refused_before_anything_is_pushed(world):
    remote, _, _, settings = world
    backend = load("kubernetes", settings)
    with pytest.raises(BackendError, match="only a candidate"):
        backend.remove("production")
    with pytest.raises(BackendError, match="fraction"):
        backend.set_split("v1", "v2", 1.5)
    with pytest.raises(BackendError, match="v9"):
        backend.deploy("staging", "v9")
    # only the repository's initial commit exists
    assert git(remote, "log", "--format=%s", "main") == "desired state: initial commit"
    with pytest.raises(BackendError, match="chiops_desired_state_repo"):
        load("kubernetes", {"chiops_registry": settings["chiops_registry"]})


def rayservice(generation, observed, version="v2", **conditions):
    return {
        "metadata": {"generation": generation, "labels": {"chiops.io/model-version": version}},
        "status": {
            "observedGeneration": observed,
            "conditions": [{"type": t, "status": s} for t, s in conditions.items()],
        },
    }


@pytest.mark.parametrize(
    ("obj", "missing"),
    [
        (rayservice(2, 2, Ready="True"), None),
        # the previous generation is still Ready: what a Ready-only wait accepted
        (rayservice(2, 1, Ready="True"), "observed generation 1, the spec is at 2"),
        (rayservice(2, 2, Ready="True", UpgradeInProgress="True"), "UpgradeInProgress"),
        (rayservice(2, 2, Ready="False"), "not Ready"),
        (rayservice(2, 2, version="v1", Ready="True"), "carries v1, not v2"),
    ],
)
def test_the_rayservice_decision(obj, missing):
    result = rayservice_state(obj, "v2")
    assert result == missing if missing is None else missing in result


def test_the_route_decision_needs_the_current_generation_accepted():
    route = {
        "metadata": {"generation": 3},
        "spec": {"rules": [{"backendRefs": [{"weight": 90}, {"weight": 10}]}]},
        "status": {
            "parents": [{"conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 2}]}]
        },
    }
    assert "has not accepted generation 3" in route_state(route, [90, 10])
    route["status"]["parents"][0]["conditions"][0]["observedGeneration"] = 3
    assert route_state(route, [90, 10]) is None
    assert "live weights [90, 10], want [75, 25]" in route_state(route, [75, 25])
