"""Inference service overhead and adaptive batching, on one model and one set of inputs.

    python bench/inference.py [--arch ggcnn] [--requests 48] [--device cpu|cuda]
                              [--max-batch 16] [--json docs/bench/inference-cpu.json]

1. Raw in-process `regrasp.learn.predict` (decode + preprocess + forward + map decoding) vs
   POST /predict over real HTTP to `bentoml serve` at concurrency 1: p50/p95 and the
   overhead ratio;
2. throughput (requests/s) at concurrency 1, 8 and 32, with adaptive batching on
   (`REGRASP_INFERENCE_MAX_BATCH_SIZE=--max-batch`) and off (`=1`), the on/off ratio, and
   the batch-size histogram of each run as the service recorded it (`GET /stats`: how
   many requests each forward pass held).

The same script runs unchanged on a GPU node with `--device cuda`.

The model is a freshly initialised network registered in a temporary `file://` store (its
weights do not change the cost); inputs are the real Jacquard depth frames when present,
else synthetic 1024² float32 frames.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from regrasp.learn.predict import prepare, to_image  # noqa: E402
from regrasp.learn.training.registry import register_untrained  # noqa: E402
from regrasp.platform import accounts  # noqa: E402
from regrasp.platform.store.db import migrations  # noqa: E402
from regrasp.platform.store.db.engine import make_engine, session_scope  # noqa: E402
from regrasp.platform.store.objects import open_store  # noqa: E402
from services.inference.model import load_served, resolve_device  # noqa: E402
from tests.harness.processes import start_service  # noqa: E402

KEY = "bench-service-key-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="ggcnn")
    parser.add_argument("--requests", type=int, default=48, help="per measurement")
    parser.add_argument("--device", default="")
    parser.add_argument("--max-batch", type=int, default=16, help="adaptive batch bound when on")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    on = args.max_batch
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = _world(root, args.arch, args.device)
        frames = _frames()
        print(
            f"model {args.arch}, {len(frames)} distinct 1024² depth frames, device "
            f"{resolve_device(args.device)}"
        )
        served = load_served(
            open_store(f"file://{root / 'objects'}"), "bench", device=resolve_device(args.device)
        )
        device = str(resolve_device(args.device))
        results: dict[tuple[int, int], float] = {}
        histograms: dict[tuple[int, int], dict[int, int]] = {}
        latency: dict[str, float] = {}
        for batch in (on, 1):
            with _serve(env, batch) as url:
                if batch == on:
                    latency = _report_latency(
                        *_paired_latencies(served, url, frames, args.requests)
                    )
                for concurrency in (1, 8, 32):
                    before = _batch_sizes(url)
                    results[(batch, concurrency)] = _throughput(
                        url, frames, max(args.requests, 2 * concurrency), concurrency
                    )
                    after = _batch_sizes(url)
                    histograms[(batch, concurrency)] = {
                        size: after[size] - before.get(size, 0)
                        for size in after
                        if after[size] - before.get(size, 0)
                    }
        print(f"\nthroughput (requests/s) over HTTP, batching on (max {on}) vs off, {device}")
        print(f"{'concurrency':>12} {'on':>8} {'off':>8} {'on/off':>8}  batch sizes when on")
        for concurrency in (1, 8, 32):
            yes, no = results[(on, concurrency)], results[(1, concurrency)]
            hist = histograms[(on, concurrency)]
            mean = sum(s * n for s, n in hist.items()) / max(1, sum(hist.values()))
            print(
                f"{concurrency:>12} {yes:8.1f} {no:8.1f} {yes / no:8.2f}  "
                f"{_histogram_text(hist)} (mean {mean:.2f})"
            )
        if args.json is not None:
            report = {
                "command": " ".join(["python", "bench/inference.py", *sys.argv[1:]]),
                "architecture": args.arch,
                "device": device,
                "frames": len(frames),
                "requests": args.requests,
                "max_batch": on,
                "cpu_threads_per_worker": 1,
                "load_average": os.getloadavg(),
                "latency_ms": latency,
                "concurrency": {
                    str(c): {
                        "on_req_s": results[(on, c)],
                        "off_req_s": results[(1, c)],
                        "on_off_ratio": results[(on, c)] / results[(1, c)],
                        "batch_sizes_on": {str(k): v for k, v in histograms[(on, c)].items()},
                        "batch_sizes_off": {str(k): v for k, v in histograms[(1, c)].items()},
                    }
                    for c in (1, 8, 32)
                },
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1) + "\n")
            print(f"\nwritten to {args.json}")


def _world(root: Path, arch: str, device: str) -> dict[str, str]:
    db_url, store_url = f"sqlite:///{root / 'db.sqlite'}", f"file://{root / 'objects'}"
    migrations.upgrade(db_url)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        register_untrained(open_store(store_url), "bench", architecture=arch, session=session)
        accounts.create_user(session, username="bench", password="bench-pw-1", role="admin")
    engine.dispose()
    return {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(root / "bento"),
        "REGRASP_DATA_DIR": str(root / "data"),
        "REGRASP_DATABASE_URL": db_url,
        "REGRASP_OBJECT_STORE_URL": store_url,
        "REGRASP_SERVICE_API_KEY": KEY,
        "REGRASP_INFERENCE_MODEL_NAME": "bench",
        "REGRASP_INFERENCE_DEVICE": device,
        "REGRASP_INFERENCE_MAX_LATENCY_MS": "60000",
        "PYTHONPATH": f"{REPO / 'shared'}{os.pathsep}{REPO}",
    }


def _frames() -> list[bytes]:
    samples = REPO.parent / "shared" / "data" / "jacquard_samples"
    found = sorted(samples.glob("*/*_perfect_depth.tiff"))[:8]
    if found:
        return [p.read_bytes() for p in found]
    rng = np.random.default_rng(0)
    return [
        cv2.imencode(".tiff", (1.0 + 0.1 * rng.random((1024, 1024))).astype("f4"))[1].tobytes()
        for _ in range(4)
    ]


def _paired_latencies(
    served, url: str, frames: list[bytes], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """In-process and HTTP latencies (ms), alternated request by request so that load from
    elsewhere on the machine hits both alike."""
    raw, http = [], []
    with httpx.Client(timeout=120) as client:
        for i in range(n + 2):
            frame = frames[i % len(frames)]
            start = time.perf_counter()
            prepared = prepare(spec=served.spec, depth=frame)
            (out,), _, _ = served.predictor.run(prepared.inputs[None])
            to_image(out, letterbox=prepared.letterbox, k=5)
            raw.append((time.perf_counter() - start) * 1000.0)
            http.append(_post(client, url, frame))
    return np.array(raw[2:]), np.array(http[2:])


class _serve:
    def __init__(self, env: dict[str, str], batch: int) -> None:
        self.env = {**env, "REGRASP_INFERENCE_MAX_BATCH_SIZE": str(batch)}
        self.log = Path(env["REGRASP_DATA_DIR"]).parent / f"server-batch{batch}.log"

    def __enter__(self) -> str:
        self.service = start_service("inference", env=self.env, log=self.log)
        url = self.service.wait_http("/readyz", timeout=120).url
        with httpx.Client(timeout=120) as client:  # warm up
            _post(client, url, _frames()[0])
        return url

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            print(self.log.read_text()[-4000:], file=sys.stderr)
        self.service.stop(grace=30)


def _post(client: httpx.Client, url: str, frame: bytes) -> float:
    start = time.perf_counter()
    r = client.post(
        f"{url}/predict",
        headers={"Authorization": f"Bearer {KEY}"},
        files={"depth": ("d.tiff", frame, "image/tiff")},
        data={"k": "5"},
    )
    if r.status_code != 200:
        raise RuntimeError(f"{r.status_code}: {r.text}")
    return (time.perf_counter() - start) * 1000.0


def _throughput(url: str, frames: list[bytes], n: int, concurrency: int) -> float:
    clients = [httpx.Client(timeout=300) for _ in range(concurrency)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(
            pool.map(
                lambda i: _post(clients[i % concurrency], url, frames[i % len(frames)]), range(n)
            )
        )
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    return n / elapsed


def _batch_sizes(url: str) -> dict[int, int]:
    """{requests in one forward pass: forward passes} the service recorded so far."""
    answer = httpx.get(f"{url}/stats", headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    answer.raise_for_status()
    return {int(k): v for k, v in answer.json()["batch_sizes"].items()}


def _histogram_text(hist: dict[int, int]) -> str:
    return " ".join(f"{size}:{n}" for size, n in sorted(hist.items())) or "-"


def _report_latency(raw: np.ndarray, http: np.ndarray) -> dict[str, float]:
    print("\nlatency at concurrency 1 (ms)")
    print(f"{'':>26} {'p50':>8} {'p95':>8}")
    for name, t in (("in-process predict", raw), ("POST /predict (HTTP)", http)):
        print(f"{name:>26} {np.percentile(t, 50):8.1f} {np.percentile(t, 95):8.1f}")
    print(
        f"{'HTTP / in-process':>26} {np.percentile(http, 50) / np.percentile(raw, 50):8.2f} "
        f"{np.percentile(http, 95) / np.percentile(raw, 95):8.2f}"
    )
    return {
        "in_process_p50": float(np.percentile(raw, 50)),
        "in_process_p95": float(np.percentile(raw, 95)),
        "http_p50": float(np.percentile(http, 50)),
        "http_p95": float(np.percentile(http, 95)),
    }


if __name__ == "__main__":
    main()
