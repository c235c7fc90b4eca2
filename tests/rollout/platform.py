"""Start and stop the local platform (playbooks/local_platform.yml, local_down.yml) on ports of a test's
own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def playbook_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "ANSIBLE_FORCE_COLOR": "0",
        }
    )
    return env


def run_playbook(
    playbook: str, extra: dict, check: bool = True, timeout: float = 900, inventory: Path | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory or ROOT / "inventories" / "local"),
            str(ROOT / "playbooks" / playbook),
            "-e",
            json.dumps(extra),
        ],
        cwd=ROOT,
        env=playbook_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{playbook} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def isolated_vars(base: int, run_dir: Path, registry: Path) -> dict:
    """Extra vars that move every local process to ports base..base+9 and a temporary run directory."""
    return {
        "chiops_run_dir": str(run_dir),
        "chiops_registry": str(registry),
        "chiops_reports_dir": str(run_dir / "reports"),
        "local_ray_temp_dir": f"/tmp/chiops-ray-t{base}",
        "local_ray_gcs_port": base,
        "local_ray_dashboard_port": base + 1,
        "local_ray_metrics_export_port": base + 2,
        "local_ray_dashboard_agent_port": base + 3,
        "local_ray_client_server_port": base + 4,
        "local_serve_http_port": base + 5,
        "local_textfile_exporter_port": base + 6,
        "local_loadgen_metrics_port": base + 7,
        "prometheus_listen_address": f"127.0.0.1:{base + 8}",
        "prometheus_base_dir": str(run_dir / "prometheus"),
        "local_ray_min_worker_port": base + 100,
        "local_ray_max_worker_port": base + 400,
        "prometheus_static_targets": [
            {"job": "textfile", "targets": [f"127.0.0.1:{base + 6}"]},
            {"job": "loadgen", "targets": [f"127.0.0.1:{base + 7}"]},
        ],
        "prometheus_file_sd": [
            {"job": "ray", "path": f"/tmp/chiops-ray-t{base}/prom_metrics_service_discovery.json"}
        ],
        "local_ray_token_file": str(run_dir / "ray_auth_token"),
    }
