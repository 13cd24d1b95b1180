"""Load test of `gankit serve`: latency percentiles and throughput per endpoint.

    python benchmarks/serve_load.py                       # models of the shipped recipes' sizes
    python benchmarks/serve_load.py --gen RUN --translate RUN --requests 200 --concurrency 1 8

The server runs as its own process (`gankit serve --port 0 --quiet`), as a user starts it; this
process is the client: `--requests` requests per scenario, `--concurrency` at a time, each on a
fresh connection (the server closes every response). Without --gen/--translate, the models are
`fast-fashion-mnist` (DCGAN 28×28, width 64, 10 classes here) and `pix2pix-edges2fashion` (U-Net
32×32) trained for one step: latency depends on the networks' sizes, not on their weights.

Prints a table of p50/p90/p99 latency and throughput and writes every latency to
benchmarks/results/serve_load.json. A run that loses a request or gets a non-200 answer says so
in the table's `errors` column and exits 1.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "serve_load.json"


def tiny_runs(root: Path) -> dict:
    from gankit.train.run import train

    quiet = ["train.steps=1", "train.threads=1", "train.log_every=1", "health.enabled=false", "train.minutes=null"]
    train("fast-fashion-mnist", ["model.conditional=true", *quiet], out=root / "gen", quiet=True)
    train("pix2pix-edges2fashion", ["data.limit=64", *quiet], out=root / "translate", quiet=True)
    return {"gen": root / "gen", "translate": root / "translate"}


class Server:
    """`gankit serve RUN --port 0` in a subprocess; ``address`` from the URL it prints."""

    def __init__(self, run: Path, workers: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "gankit", "serve", str(run), "--port", "0", "--quiet",
                                      "--workers", str(workers)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if " at http://" not in line:
            self.proc.kill()
            raise SystemExit(f"gankit serve did not start: {line!r}")
        host, port = line.rsplit(" at http://", 1)[1].strip().rstrip("/").rsplit(":", 1)
        self.address = (host, int(port))

    def info(self) -> dict:
        conn = http.client.HTTPConnection(*self.address, timeout=60)
        conn.request("GET", "/api/info")
        info = json.loads(conn.getresponse().read())
        conn.close()
        return info

    def close(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def plan(kind: str, info: dict, n: int, upload: bytes) -> list:
    """(name, method, paths, body) of each scenario for a server of ``kind``."""
    if kind == "translate":
        return [("POST /api/translate (64×64 PNG)", "POST", ["/api/translate"] * n, upload)]
    k = info["num_classes"]
    label = (lambda i: f"&class={i % k}") if k else (lambda i: "")
    return [("GET /api/info", "GET", ["/api/info"] * n, None),
            ("GET /api/sample n=1", "GET", [f"/api/sample?seed={i}&n=1{label(i)}" for i in range(n)], None),
            ("GET /api/sample n=16", "GET", [f"/api/sample?seed={i}&n=16" for i in range(n)], None),
            ("GET /api/walk", "GET", [f"/api/walk?a=0&b=1&t={i / max(1, n - 1):.3f}" for i in range(n)], None)]


def one(address, method: str, path: str, body: bytes | None) -> tuple:
    t = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(*address, timeout=60)
        conn.request(method, path, body=body, headers={"Content-Type": "image/png"} if body else {})
        res = conn.getresponse()
        data = res.read()
        conn.close()
        ok = res.status == 200 and (data[:8] == b"\x89PNG\r\n\x1a\n" or path == "/api/info")
        return ok, res.status, time.perf_counter() - t
    except OSError as e:
        return False, type(e).__name__, time.perf_counter() - t


def scenario(address, name: str, method: str, paths: list, body: bytes | None, concurrency: int) -> dict:
    one(address, method, paths[0], body)  # warm-up: first-call costs (allocator, kernels) are not the steady state
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda p: one(address, method, p, body), paths))
    wall = time.perf_counter() - start
    lat = np.array([r[2] for r in results]) * 1000
    bad = [r[1] for r in results if not r[0]]
    return {"scenario": name, "concurrency": concurrency, "requests": len(paths), "ok": len(paths) - len(bad),
            "errors": sorted(set(map(str, bad))), "p50_ms": float(np.percentile(lat, 50)),
            "p90_ms": float(np.percentile(lat, 90)), "p99_ms": float(np.percentile(lat, 99)),
            "throughput_rps": len(paths) / wall, "wall_s": wall, "latencies_ms": [round(v, 3) for v in lat]}


def table(rows: list) -> str:
    lines = ["| endpoint | concurrent | requests | ok | p50 ms | p90 ms | p99 ms | requests/s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['concurrency']} | {r['requests']} | {r['ok']} | {r['p50_ms']:.1f} | "
                     f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['throughput_rps']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gen", type=Path, help="a generation run (default: fast-fashion-mnist, one step)")
    ap.add_argument("--translate", type=Path, help="a translation run (default: pix2pix-edges2fashion, one step)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--workers", type=int, default=4, help="the server's --workers")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    from PIL import Image

    from gankit.utils import atomic_write_text

    load_before = os.getloadavg()[0]  # other processes on the machine share its cores
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"gen": args.gen, "translate": args.translate}
        if not (args.gen and args.translate):
            made = tiny_runs(Path(tmp))
            runs = {k: v or made[k] for k, v in runs.items()}
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        upload = buf.getvalue()
        n = args.requests
        rows = []
        for kind in ("gen", "translate"):
            server = Server(runs[kind], args.workers)
            try:
                for c in args.concurrency:
                    for name, method, paths, body in plan(kind, server.info(), n, upload):
                        rows.append(scenario(server.address, name, method, paths, body, c))
                        print(f"{name}, {c} at a time: p50 {rows[-1]['p50_ms']:.1f} ms", file=sys.stderr)
            finally:
                server.close()
    rows.sort(key=lambda r: (r["concurrency"], r["scenario"]))
    models = {"gen": str(args.gen or "fast-fashion-mnist, 1 step, conditional"),
              "translate": str(args.translate or "pix2pix-edges2fashion, 1 step")}
    record = {"command": "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "load_average_1m_at_start": load_before},
              "server": {"workers": args.workers, "models": models},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(record, indent=1))
    print(table(rows))
    print(f"raw latencies: {args.out}")
    return 0 if all(r["ok"] == r["requests"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
