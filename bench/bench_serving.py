"""\
Serving bench: the ChiOps public route on Ray Serve against one plain FastAPI + uvicorn process, in one run.

For each model (the reference CNN and the heavy one, training/configs/) and each layout of the ChiOps service:
closed-loop throughput and p50/p99 at concurrency 1, 8, 32, then an open-loop run at half of each target's
best throughput (the p99/p50 goal is measured there), the memory of its processes (PSS), the cold start to the
first successful /predict, and where the CPU goes per request (each process's CPU time over the c=32 run
divided by the requests answered). The plain server runs throughout a model's measurements and is measured
interleaved with each ChiOps target (same concurrency level, back to back), so other load on a shared machine
hits both alike. The load client (bench/http_load.py) runs in its own process; every server listens on
127.0.0.1 only.

    python bench/bench_serving.py [--models reference heavy] [--layouts split inline] [--duration 8]

The models are trained once with the project's own training CLI into a registry cached under
~/.cache/chiops/bench-registry/<hash of the configs>.
"""

import argparse
import contextlib
import hashlib
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

MODELS = {"reference": "training/configs/digits.yaml", "heavy": "training/configs/digits_heavy.yaml"}
# The environment of the Ray processes per layout. "split" is Serve's and Ray's defaults (the layout the
# rollout tests use); the fast layouts also run Ray's workers at nice 0 (Ray starts them at 15, so on a node
# shared with anything else the replicas lose the CPU to it; the plain server runs at 0).
RAY_ENV = {"split": {}, "fused": {"RAY_worker_niceness": "0"}, "inline": {"RAY_worker_niceness": "0"}}
CACHE = Path(os.environ.get("CHIOPS_CACHE", Path.home() / ".cache" / "chiops"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[bench_serving {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _processes(pids):
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(psutil.Process(pid))
    return out


def memory_of(pids) -> dict:
    rss = pss = n = 0
    for proc in _processes(pids):
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        n += 1
    return {"processes": n, "rss_mib": round(rss / 2**20), "pss_mib": round(pss / 2**20)}


def _label(proc) -> str:
    """A readable name: Ray workers set their title to ray::<actor>, e.g.
    ray::ServeReplica:public:PublicRouter."""
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
    if cmd and cmd[0].startswith("ray::"):
        return cmd[0].split(" ")[0].removeprefix("ray::")
    if cmd and "python" in Path(cmd[0]).name and len(cmd) > 1:
        return Path(cmd[1]).name if not cmd[1].startswith("-") else " ".join(cmd[1:3])
    return proc.name()


def cpu_snapshot(pids) -> dict:
    out = {}
    for proc in _processes(pids):
        try:
            t = proc.cpu_times()
            out[proc.pid] = (_label(proc), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def cpu_per_request(before: dict, after: dict, requests: int) -> dict:
    """CPU ms per answered request, by process label (processes with the same label summed)."""
    out: dict = {}
    for pid, (label, t1) in after.items():
        t0 = before.get(pid, (label, t1))[1]
        out[label] = out.get(label, 0.0) + (t1 - t0)
    return {
        k: round(v * 1000 / max(requests, 1), 3)
        for k, v in sorted(out.items(), key=lambda kv: -kv[1])
        if v > 0
    }


def first_predict(url: str, body: str, started: float, proc, timeout_s: float = 400) -> float:
    """Seconds from ``started`` to the first 200 from POST url (the server process ``proc`` must stay up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode} before answering")
        try:
            r = httpx.post(url, content=body, timeout=5, headers={"content-type": "application/json"})
            if r.status_code == 200:
                return round(time.monotonic() - started, 1)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} answered no 200 within {timeout_s:.0f} s")


def run_client(url: str, bodies_file: str, duration: float, concurrency=None, rate=None) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "http_load.py"), "--url", url, "--bodies", bodies_file]
    cmd += ["--duration", str(duration)]
    cmd += ["--concurrency", str(concurrency)] if concurrency else ["--rate", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_profiles(py_spy: str | None, pids, duration: float, workdir: Path) -> list:
    """py-spy (sampling, from PyPI) on the Serve proxy and replicas for the next ``duration`` seconds."""
    if not py_spy:
        return []
    out = []
    for proc in _processes(pids):
        label = _label(proc)
        if "ProxyActor" in label or "ServeReplica" in label:
            path = workdir / f"profile-{proc.pid}.txt"
            cmd = [py_spy, "record", "--pid", str(proc.pid), "--duration", str(int(duration)),
                   "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(path)]  # fmt: skip
            with path.with_suffix(".err").open("w") as err:
                out.append((label, path, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)))
    return out


def collect_profiles(profiles: list, top: int = 12) -> dict:
    """Per process: the share of samples (inclusive) of the frames that took the most, from py-spy's raw
    (collapsed-stack) output; idle samples (the event loop waiting in epoll/select) are counted apart."""
    out = {}
    for label, path, proc in profiles:
        if proc.wait(timeout=120) != 0 and not path.exists():
            out[label] = {"error": path.with_suffix(".err").read_text().strip()[-300:] or "py-spy failed"}
            continue
        inclusive: dict = {}
        total = idle = 0
        for line in path.read_text().splitlines() if path.exists() else []:
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            if any(w in frames[-1] for w in ("epoll", "select (selectors", "_run_once", "wait (threading")):
                idle += n
            for frame in set(f.split(" (")[0] for f in frames):
                inclusive[frame] = inclusive.get(frame, 0) + n
        busy = max(total - idle, 1)
        ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])
        out[label] = {
            "samples": total,
            "busy_share": round(1 - idle / total, 3) if total else None,
            "top_inclusive_of_busy": {f: round(n / busy, 3) for f, n in ranked[:top]},
        }
    return out


def measure(
    targets: dict, pids: dict, bodies_file: str, duration: float, concurrencies, profile=None
) -> dict:
    """Measure targets interleaved (each concurrency level: every target in turn), so that load from other
    processes on a shared machine falls on all of them alike rather than on whichever ran last."""
    for url in targets.values():
        run_client(url, bodies_file, 3, concurrency=8)  # warm-up: connections, batch queues, lazy imports
    results = {name: {"url": url, "closed": {}} for name, url in targets.items()}
    for c in concurrencies:
        for name, url in targets.items():
            before = cpu_snapshot(pids[name])
            last = c == max(concurrencies)
            profiles = (
                start_profiles(profile["py_spy"], pids[name], duration, profile["dir"])
                if last and profile
                else []
            )
            results[name]["closed"][c] = r = run_client(url, bodies_file, duration, concurrency=c)
            if last:
                r["cpu_ms_per_request"] = cpu_per_request(before, cpu_snapshot(pids[name]), r["ok"])
                if profiles:
                    r["profile"] = collect_profiles(profiles)
            failed = r["non_200"] + r["errors"]
            log(f"{name} c={c}: {r['rps']} rps, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, failed {failed}")
    for name, url in targets.items():
        best = max(r["rps"] for r in results[name]["closed"].values())
        results[name]["half_load"] = r = run_client(url, bodies_file, duration, rate=max(1.0, best / 2))
        r["rate"] = round(best / 2, 1)
        r["p99_over_p50"] = round(r["p99_ms"] / r["p50_ms"], 2) if r["p50_ms"] else None
        log(
            f"{name} half load ({r['rate']} rps): p50 {r['p50_ms']} ms, "
            f"p99 {r['p99_ms']} ms, x{r['p99_over_p50']}"
        )
    return results


# ---------------------------------------------------------------- the ChiOps service (in its own process)


def serve_chiops(registry: str, version: str, layout: str, http_port: int, key_file: str) -> None:
    """Start a local Ray, deploy production + the public router, wait for stdin to close."""
    from serving.deploy import LOOPBACK_ENV

    os.environ.update(RAY_ENV[layout], **{LOOPBACK_ENV: "0"})
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    import ray
    from ray import serve

    from serving.config import Tuning, build_serve_config
    from serving.deploy import dashboard_url, deploy, init_local_ray, wait_running

    context = init_local_ray(num_cpus=4, log_to_driver=False, logging_level="ERROR")
    try:
        cfg = build_serve_config(
            registry,
            ["production"],
            versions={"production": version},
            http_port=http_port,
            token_key_file=key_file,
            tuning=Tuning.for_layout(layout),
        )
        deploy(cfg, dashboard_url(context))
        wait_running([a["name"] for a in cfg["applications"]], timeout_s=300, progress=None)
        print(json.dumps({"running": True}), flush=True)
        sys.stdin.read()  # the parent closes stdin when it is done measuring
    finally:
        serve.shutdown()
        ray.shutdown()


# ---------------------------------------------------------------- orchestration


def bench_registry() -> tuple[str, dict]:
    """Both models trained by the training CLI, once per content of their configs; {model: version}."""
    digest = hashlib.sha256()
    for name in sorted(MODELS):
        digest.update(name.encode() + (ROOT / MODELS[name]).read_bytes())
    root = CACHE / "bench-registry" / digest.hexdigest()[:16]
    done = root / "bench_models.json"  # written last: a registry without it is an interrupted build
    if done.exists():
        return str(root), json.loads(done.read_text())
    if root.exists():
        import shutil

        shutil.rmtree(root)
    versions = {}
    for name in sorted(MODELS):
        log(f"training the {name} model ({MODELS[name]}) into {root} (once)")
        out = subprocess.run(
            [sys.executable, "-m", "training", "train", "--config", MODELS[name], "--registry", str(root),
             "--no-gate", "--output", str(root.parent / f"{root.name}-run-{name}")],
            cwd=ROOT, capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        versions[name] = json.loads(out.stdout.strip().splitlines()[-1])["registered"]
    done.write_text(json.dumps(versions))
    return str(root), versions


def write_bodies(registry: str, version: str, workdir: Path, images_per_request: int) -> str:
    from model_registry import Registry

    images, _ = Registry(registry).test_split(version)
    bodies = [
        json.dumps({"images": images[i : i + images_per_request].tolist()})
        for i in range(0, min(len(images), 50 * images_per_request), images_per_request)
        if len(images[i : i + images_per_request]) == images_per_request
    ]
    path = workdir / f"bodies-{version}.json"
    path.write_text(json.dumps(bodies))
    return str(path)


def start_plain(registry, version, env, body):
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "plain_server.py"), "--registry", registry,
         "--version", version, "--port", str(port)],
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/predict"
    cold = first_predict(url, body, started, proc)
    log(f"plain server ({version}): first /predict after {cold} s")
    return proc, url, cold


def bench_layout(layout, registry, version, bodies, body, env, key_file, plain, args) -> dict:
    """Start the ChiOps service in one layout and measure it interleaved with the (running) plain server."""
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve-chiops", "--registry", registry, "--version", version,
         "--layout", layout, "--port", str(port), "--key-file", key_file],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/predict"  # the public route
        cold = first_predict(url, body, started, proc)
        log(f"ChiOps {layout}: first /predict after {cold} s")
        if not proc.stdout.readline():
            raise RuntimeError(f"ChiOps service ({layout}) did not start")
        ray_pids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        targets = {"plain": plain["url"], f"chiops-{layout}": url}
        pids = {"plain": [plain["pid"]], f"chiops-{layout}": ray_pids}
        # py-spy's raw profiles are summarised into the results, then removed with their directory
        with tempfile.TemporaryDirectory(prefix=f"bench-py-spy-{layout}-") as spy_dir:
            profile = {"py_spy": args.py_spy, "dir": Path(spy_dir)} if args.py_spy else None
            out = {
                "cold_start_s": cold,
                "targets": measure(targets, pids, bodies, args.duration, args.concurrency, profile),
            }
        # Ray's processes (GCS, raylet, agents, controller, proxy, replicas), not the driver that started them
        out["memory"] = memory_of([c.pid for c in psutil.Process(proc.pid).children(recursive=True)])
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
        "| model | layout | target | c=1 rps (p50/p99 ms) | c=8 rps | c=32 rps (p50/p99 ms) | "
        "vs plain @c=32 | half load: rps, p50/p99 ms, p99/p50 | PSS MiB (procs), vs plain | cold start s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, m in results["models"].items():
        plain_mem = m["plain_memory"]
        for layout, v in m["layouts"].items():
            base = v["targets"]["plain"]["closed"].get(32, {}).get("rps")
            for name, r in v["targets"].items():
                mem = plain_mem if name == "plain" else v["memory"]
                cl = r["closed"]
                c1 = f"{cl[1]['rps']} ({cl[1]['p50_ms']}/{cl[1]['p99_ms']})" if 1 in cl else "-"
                c8 = f"{cl[8]['rps']}" if 8 in cl else "-"
                c32 = f"{cl[32]['rps']} ({cl[32]['p50_ms']}/{cl[32]['p99_ms']})" if 32 in cl else "-"
                ratio = f"**{cl[32]['rps'] / base:.2f}x**" if base and 32 in cl else "-"
                h = r["half_load"]
                mem_ratio = mem["pss_mib"] / plain_mem["pss_mib"] if plain_mem["pss_mib"] else 0
                cold = m["plain_cold_start_s"] if name == "plain" else v["cold_start_s"]
                lines.append(
                    f"| {model} | {layout} | {name} | {c1} | {c8} | {c32} | {ratio} | "
                    f"{h['rps']}, {h['p50_ms']}/{h['p99_ms']}, {h['p99_over_p50']} | "
                    f"{mem['pss_mib']} ({mem['processes']}), {mem_ratio:.1f}x | {cold} |"
                )
    lines += ["", "CPU ms per request at c=32, by process (top 6):", ""]
    for model, m in results["models"].items():
        for layout, v in m["layouts"].items():
            for name, r in v["targets"].items():
                cpu = r["closed"].get(32, {}).get("cpu_ms_per_request", {})
                top = ", ".join(f"{k} {ms}" for k, ms in list(cpu.items())[:6])
                lines.append(f"- {model} / {layout} / {name}: total {sum(cpu.values()):.2f} — {top}")
                for label, prof in r["closed"].get(32, {}).get("profile", {}).items():
                    if "error" in prof or not prof["samples"]:
                        lines.append(f"  - py-spy {label}: no samples ({prof.get('error', 'empty')})")
                        continue
                    frames = ", ".join(
                        f"{f} {share:.0%}" for f, share in prof["top_inclusive_of_busy"].items()
                    )
                    lines.append(
                        f"  - py-spy {label}: busy {prof['busy_share']:.0%} of samples; of busy: {frames}"
                    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve-chiops")
    s.add_argument("--registry", required=True)
    s.add_argument("--version", required=True)
    s.add_argument("--layout", choices=sorted(RAY_ENV), required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--key-file", required=True)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["reference", "heavy"])
    p.add_argument("--layouts", nargs="+", choices=sorted(RAY_ENV), default=["split", "inline"])
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--images-per-request", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "reports" / "bench_serving.json"))
    p.add_argument("--py-spy", help="path of a py-spy binary: profile the proxy and replicas during c=max")
    a = p.parse_args(argv)
    if a.cmd == "serve-chiops":
        serve_chiops(a.registry, a.version, a.layout, a.port, a.key_file)
        return 0

    from serving.tokens import ensure_key_file

    started = time.time()
    registry, versions = bench_registry()
    results: dict = {"registry": registry, "versions": versions, "models": {}}
    with tempfile.TemporaryDirectory(prefix="chiops-bench-") as tmp:
        workdir = Path(tmp)
        key_file = str(ensure_key_file(workdir / "token.key"))
        env = {**os.environ, "CHIOPS_TOKEN_KEY": secrets.token_hex(32)}
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
        for model in a.models:
            version = versions[model]
            bodies = write_bodies(registry, version, workdir, a.images_per_request)
            body = json.loads(Path(bodies).read_text())[0]
            proc, url, cold = start_plain(registry, version, env, body)
            m = results["models"][model] = {"version": version, "plain_cold_start_s": cold, "layouts": {}}
            try:
                plain = {"url": url, "pid": proc.pid}
                for layout in a.layouts:
                    m["layouts"][layout] = bench_layout(
                        layout, registry, version, bodies, body, env, key_file, plain, a
                    )
                m["plain_memory"] = memory_of([proc.pid])
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
    results["settings"] = {
        "duration_s": a.duration,
        "images_per_request": a.images_per_request,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "wall_s": round(time.time() - started),
    }
    table = report(results)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(table)
    print(f"\n(load average at the end {os.getloadavg()}; full results: {a.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
