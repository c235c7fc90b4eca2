"""The log check `make demo`'s test runs (tests/security/secrets_in_logs.py) finds what it must find."""

from __future__ import annotations

import base64
import secrets

import pytest

from tests.security.secrets_in_logs import assert_no_secret_in_logs


def make_run(tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "demo" / "report-v2").mkdir(parents=True)
    key, token = secrets.token_hex(32), secrets.token_hex(32)
    (run / "token.key").write_text(key + "\n")
    (run / "ray_auth_token").write_text(token + "\n")
    (run / "logs" / "ray.log").write_text(
        "ray started\nauth mode token, token file runs/local/ray_auth_token\n"
    )
    (run / "demo" / "report-v2" / "rollout.json").write_text('{"outcome": "promoted"}')
    return run, key, token


def test_clean_run_passes(tmp_path):
    run, _, _ = make_run(tmp_path)
    assert_no_secret_in_logs(run, "PLAY RECAP ok=12", openstack_secret=secrets.token_urlsafe(24))


@pytest.mark.parametrize(
    "leak", ["token_key_in_log", "ray_token_base64", "openstack_in_output", "ray_session"]
)
def test_each_leak_is_named(tmp_path, leak):
    run, key, token = make_run(tmp_path)
    os_secret = secrets.token_urlsafe(24)
    output = "PLAY RECAP ok=12"
    ray_session = tmp_path / "ray-session"
    (ray_session / "logs").mkdir(parents=True)
    if leak == "token_key_in_log":
        (run / "logs" / "serve.log").write_text(f"env CHIOPS_TOKEN_KEY={key}\n")
        where = "token.key in"
    elif leak == "ray_token_base64":
        b64 = base64.b64encode(token.encode()).decode()
        (run / "demo" / "report-v2" / "rollout.json").write_text(f'{{"auth": "Basic {b64}"}}')
        where = "ray_auth_token in"
    elif leak == "openstack_in_output":
        output += f"\nOS_APPLICATION_CREDENTIAL_SECRET={os_secret}"
        where = "OS_APPLICATION_CREDENTIAL_SECRET in the command output"
    else:
        (ray_session / "logs" / "dashboard.log").write_text(f"Authorization: Bearer {token}\n")
        where = "ray_auth_token in"
    with pytest.raises(AssertionError) as exc:
        assert_no_secret_in_logs(run, output, os_secret, extra_roots=(ray_session,))
    assert where in str(exc.value)


def test_a_run_without_its_secret_files_is_not_called_clean(tmp_path):
    run, _, _ = make_run(tmp_path)
    (run / "ray_auth_token").unlink()
    with pytest.raises(AssertionError, match="ray_auth_token"):
        assert_no_secret_in_logs(run, "")
