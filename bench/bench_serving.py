"""Serving bench: the ChiOps service on Ray Serve against one plain FastAPI + uvicorn process, in one run.

For each target: closed-loop throughput and p50/p99 at concurrency 1, 8, 32, then an open-loop run at half of
the target's best throughput (the p99/p50 goal is measured there), and the memory of its processes. The plain
server runs throughout and is measured interleaved with each variant (same concurrency level, back to back),
so that other load on a shared machine hits both alike. The load client (bench/http_load.py) runs in its own
process; every server listens on 127.0.0.1 only.

    python bench/bench_serving.py [--registry registry] [--duration 8] [--variants default tuned]

Variants of the ChiOps service:
  default  Serve's default settings, the two-deployment layout (ingress → Classifier), through the proxy
  tuned    RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (gRPC between replicas, user code on the replica's event loop,
           direct ingress), Ray workers at nice 0 instead of 15, and the fused layout (the model runs inside
           the ingress replica)
"""

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "default": {"env": {}, "fused": False},
    # Ray starts workers at nice 15; the plain server and everything else on the machine run at 0.
    "tuned": {"env": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_worker_niceness": "0"}, "fused": True},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[bench_serving {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def memory_of(pids) -> dict:
    rss = pss = 0
    n = 0
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        n += 1
    return {"processes": n, "rss_mib": round(rss / 2**20), "pss_mib": round(pss / 2**20)}


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout_s:.0f} s")


def run_client(url: str, bodies_file: str, duration: float, concurrency=None, rate=None) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "http_load.py"), "--url", url, "--bodies", bodies_file]
    cmd += ["--duration", str(duration)]
    cmd += ["--concurrency", str(concurrency)] if concurrency else ["--rate", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(targets: dict, bodies_file: str, duration: float, concurrencies) -> dict:
    """Measure targets interleaved (each concurrency level: every target in turn), so that load from other
    processes on a shared machine falls on all of them alike rather than on whichever ran last."""
    for url in targets.values():
        run_client(url, bodies_file, 3, concurrency=8)  # warm-up: connections, batch queues, lazy imports
    results = {name: {"url": url, "closed": {}} for name, url in targets.items()}
    for c in concurrencies:
        for name, url in targets.items():
            results[name]["closed"][c] = r = run_client(url, bodies_file, duration, concurrency=c)
            failed = r["non_200"] + r["errors"]
            log(f"{name} c={c}: {r['rps']} rps, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, failed {failed}")
    for name, url in targets.items():
        best = max(r["rps"] for r in results[name]["closed"].values())
        results[name]["half_load"] = r = run_client(url, bodies_file, duration, rate=max(1.0, best / 2))
        r["rate"] = round(best / 2, 1)
        r["p99_over_p50"] = round(r["p99_ms"] / r["p50_ms"], 2) if r["p50_ms"] else None
        log(
            f"{name} half load ({r['rate']} rps): p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, x{r['p99_over_p50']}"
        )
    return results


# ---------------------------------------------------------------- the ChiOps service (in its own process)


def serve_chiops(registry: str, variant: str, http_port: int, key_file: str) -> None:
    """Start a local Ray, deploy production + the public router, print the URLs, wait for stdin to close."""
    os.environ.update(VARIANTS[variant]["env"])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    import ray
    from ray import serve
    from ray._private import state

    from serving.config import Tuning, build_serve_config
    from serving.deploy import deploy, wait_running

    ray.init(address="local", include_dashboard=False, num_cpus=4, log_to_driver=False, logging_level="ERROR")
    try:
        cfg = build_serve_config(
            registry,
            ["production"],
            http_port=http_port,
            token_key_file=key_file,
            tuning=Tuning(fused=VARIANTS[variant]["fused"]),
        )
        deploy(cfg)
        wait_running([a["name"] for a in cfg["applications"]], timeout_s=300, progress=None)
        urls = {"proxy": f"http://127.0.0.1:{http_port}/production/predict"}
        ingress = [
            a["Pid"]
            for a in state.actors().values()
            if a["State"] == "ALIVE" and a["Name"].startswith("SERVE_REPLICA::production#EnvironmentIngress")
        ]
        # With direct ingress the ingress replica listens on a port of its own (30000+).
        for conn in psutil.Process(ingress[0]).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and 30000 <= conn.laddr.port < 31000:
                urls["direct"] = f"http://127.0.0.1:{conn.laddr.port}/production/predict"
        print(json.dumps({"urls": urls}), flush=True)
        sys.stdin.read()  # the parent closes stdin when it is done measuring
    finally:
        serve.shutdown()
        ray.shutdown()


# ---------------------------------------------------------------- orchestration


def ensure_registry(path: str | None, workdir: Path) -> str:
    from model_registry import Registry

    if path and Registry(path).alias_target("production"):
        return path
    from training.config import load_config
    from training.pipeline import run

    log(
        f"no production model in {path!r}: training the reference recipe (5 epochs) for the bench in {workdir}"
    )
    config = load_config(
        ROOT / "training" / "configs" / "digits.yaml", ["train.epochs=5", "train.patience=6"]
    )
    run(config, workdir / "run")
    root = workdir / "registry"
    Registry(root).register(workdir / "run", None, ["production"], reason="bench")
    return str(root)


def write_bodies(registry: str, workdir: Path, images_per_request: int) -> str:
    from model_registry import Registry

    reg = Registry(registry)
    images, _ = reg.test_split(reg.require("production"))
    bodies = [
        json.dumps({"images": images[i : i + images_per_request].tolist()})
        for i in range(0, min(len(images), 50 * images_per_request), images_per_request)
        if len(images[i : i + images_per_request]) == images_per_request
    ]
    path = workdir / "bodies.json"
    path.write_text(json.dumps(bodies))
    return str(path)


def start_plain(registry, env):
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "plain_server.py"),
            "--registry",
            registry,
            "--port",
            str(port),
        ],
        env=env,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    log(f"plain server up in {time.monotonic() - started:.1f} s")
    return proc, f"http://127.0.0.1:{port}/predict", round(time.monotonic() - started, 1)


def bench_variant(variant, registry, bodies, env, key_file, plain_url, args) -> dict:
    """Start the ChiOps service in one variant and measure it interleaved with the (running) plain server."""
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve-chiops", "--registry", registry, "--variant", variant,
         "--port", str(port), "--key-file", key_file],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"ChiOps service ({variant}) did not start")
        urls = json.loads(line)["urls"]
        startup = round(time.monotonic() - started, 1)
        log(f"ChiOps {variant} up in {startup} s: {urls}")
        targets = {"plain": plain_url, **{f"chiops-{variant}-{k}": u for k, u in urls.items()}}
        out = {"startup_s": startup, "targets": measure(targets, bodies, args.duration, args.concurrency)}
        children = psutil.Process(proc.pid).children(recursive=True)
        out["memory"] = memory_of(
            [c.pid for c in children]
        )  # Ray's processes, not the driver that started them
        out["memory"]["driver"] = memory_of([proc.pid])
        return out
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()


def report(results: dict) -> str:
    lines = [
        "| variant | target | c=1 rps (p50/p99 ms) | c=8 rps (p50/p99 ms) | c=32 rps (p50/p99 ms) | "
        "vs plain @c=32 | half load: rps, p50/p99 ms, p99/p50 | memory RSS / PSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    plain_mem = results["plain_memory"]
    for variant, v in results["variants"].items():
        base = v["targets"]["plain"]["closed"].get(32, {}).get("rps")
        for name, r in v["targets"].items():
            mem = plain_mem if name == "plain" else v["memory"]
            cells = [
                f"{r['closed'][c]['rps']} ({r['closed'][c]['p50_ms']}/{r['closed'][c]['p99_ms']})"
                if c in r["closed"]
                else "-"
                for c in (1, 8, 32)
            ]
            ratio = f"{r['closed'][32]['rps'] / base:.2f}x" if base and 32 in r["closed"] else "-"
            h = r["half_load"]
            lines.append(
                f"| {variant} | {name} | {' | '.join(cells)} | {ratio} | "
                f"{h['rps']}, {h['p50_ms']}/{h['p99_ms']}, {h['p99_over_p50']} | "
                f"{mem['rss_mib']} / {mem['pss_mib']} ({mem['processes']} proc) |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve-chiops")
    s.add_argument("--registry", required=True)
    s.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--key-file", required=True)
    p.add_argument("--registry", default=str(ROOT / "registry"))
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--images-per-request", type=int, default=8)
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["default", "tuned"])
    p.add_argument("--out", default=str(ROOT / "reports" / "bench_serving.json"))
    a = p.parse_args(argv)
    if a.cmd == "serve-chiops":
        serve_chiops(a.registry, a.variant, a.port, a.key_file)
        return 0

    from serving.tokens import ensure_key_file

    with tempfile.TemporaryDirectory(prefix="chiops-bench-") as tmp:
        workdir = Path(tmp)
        registry = ensure_registry(a.registry, workdir)
        bodies = write_bodies(registry, workdir, a.images_per_request)
        key_file = str(ensure_key_file(workdir / "token.key"))
        env = {**os.environ, "CHIOPS_TOKEN_KEY": secrets.token_hex(32)}
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
        plain, plain_url, plain_startup = start_plain(registry, env)
        results = {"plain_startup_s": plain_startup, "variants": {}}
        try:
            for variant in a.variants:
                results["variants"][variant] = bench_variant(
                    variant, registry, bodies, env, key_file, plain_url, a
                )
            results["plain_memory"] = memory_of([plain.pid])
        finally:
            plain.send_signal(signal.SIGINT)
            plain.wait(timeout=30)
    results["settings"] = {
        "duration_s": a.duration,
        "images_per_request": a.images_per_request,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }
    table = report(results)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(table)
    print(f"\n(full results: {a.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
