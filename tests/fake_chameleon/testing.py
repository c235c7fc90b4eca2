"""Helpers for tests that drive chi_scripts against the fake (credentials to grep for, spec builder)."""

from __future__ import annotations

from tests.fake_chameleon.server import FakeChameleon

# Recognisable credentials: tests grep every output for them.
SECRET_PASSWORD = "pw-LEAKCHECK-7f3a9c"
SECRET_APP_SECRET = "appsecret-LEAKCHECK-52b1"
SECRET_OIDC = "oidc-LEAKCHECK-e81d"
SECRETS = (SECRET_PASSWORD, SECRET_APP_SECRET, SECRET_OIDC)


def spec_dict(fake: FakeChameleon, **overrides) -> dict:
    spec = {
        "site": "CHI@TACC",
        "lease_name": "chiops-test",
        "duration": "8h",
        "image": "CC-Ubuntu24.04",
        "key_name": "chiops",
        "ssh_user": "cc",
        "ssh_port": fake.config.ssh_port,
        "network": "sharednet1",
        "poll_interval": 0.05,
        "server_retries": 1,
        "timeouts": {"lease": 5, "server": 5, "ssh": 1.5, "delete": 5},
        "nodes": [
            {
                "name": "control",
                "node_type": "compute_cascadelake_r",
                "count": 1,
                "groups": ["kube_control_plane", "etcd", "kube_node"],
                "floating_ip": True,
            },
            {
                "name": "gpu",
                "node_type": "gpu_mi100",
                "count": 1,
                "image": "CC-Ubuntu24.04-ROCm",
                "groups": ["kube_node", "gpu_amd"],
            },
        ],
    }
    spec.update(overrides)
    return spec


def assert_no_secret(*texts: str):
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a credential leaked: {secret[:8]}..."
