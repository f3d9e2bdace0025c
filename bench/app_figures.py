"""The app's own speed and memory, as a class would meet them: cold start to a served page, a trial change in
the Trials tab (round trip and bytes sent), a 4-sample demo reconstruction, and the server's peak RSS.

    .venv/bin/python bench/app_figures.py [--trials 30]

Starts ``python app.py`` on the demo bundle as a fresh process on a free loopback port (the cold start counts
from there), drives it with gradio_client and reads the process's peak RSS (VmHWM) at the end. Writes
bench/results/app_figures.json (the app's output: bench/results/app_figures.log). Goals (issue 14, 2 cores):
cold start <= 10 s, peak RSS <= 1.5 GB, a trial change <= 0.5 s and <= 300 KB, a 4-sample reconstruction <= 5 s.
Quick run (``BENCH_QUICK=1``): 10 trial changes, into bench/results/quick/.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import quick  # noqa: E402
from mindeye.pipelines.settings import V1_GUIDANCE, V1_STEPS, V1_STRENGTH  # noqa: E402


def rss_parts_mb(pid: int) -> dict:
    """Resident memory now, split: anonymous (the heap: tensors, arrays) and file-backed (mapped libraries such
    as torch's CUDA kernels, which the OS can drop and share between processes)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        for key in ("VmRSS", "RssAnon", "RssFile"):
            if line.startswith(key + ":"):
                out[key] = round(int(line.split()[1]) / 1024)
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=10 if quick() else 30, help="trial changes to time")
    args = p.parse_args()
    import numpy as np
    from gradio_client import Client

    from bench.machine import machine_info, result_path, save_result
    from tests.conftest import free_port
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    log_path = result_path("app_figures", "log")
    log = open(log_path, "w")
    app = subprocess.Popen([sys.executable, "-u", str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                           stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except Exception:
                if app.poll() is not None or time.time() - t0 > 300:
                    raise SystemExit("the app did not start")
                time.sleep(0.1)
        cold_start = time.time() - t0
        rss_start = peak_rss_mb(app.pid)
        # the app loads its models in the background once the page is served: time trials after that
        t_warm = time.time()
        while "models loaded" not in log_path.read_text():
            if time.time() - t_warm > 300:
                raise SystemExit("the app did not finish loading its models in 5 minutes")
            time.sleep(0.2)
        warm_up = time.time() - t0
        client = Client(url, verbose=False)
        client.predict(0, api_name="/brain_view")  # the first map of a session builds the surface geometry file
        rng = np.random.default_rng(0)
        lat, sent = [], []
        for i in rng.integers(0, 1000, args.trials):
            t = time.time()
            image, caption, table = client.predict(int(i), api_name="/trial")
            view = client.predict(int(i), api_name="/brain_view")
            lat.append(time.time() - t)
            sent.append(Path(image).stat().st_size + len(caption) + len(json.dumps(table)) + len(view))
        # the server's own time for the same updates (no HTTP, no queue): the engine calls behind /trial + /brain_view
        from components.brain import update
        from mindeye.engine import get_engine
        engine = get_engine()
        update(engine, engine.brain_view(0))
        server = []
        for i in rng.integers(0, 1000, args.trials):
            t = time.time()
            engine.test_trial(int(i))
            update(engine, engine.brain_view(int(i)))
            server.append(time.time() - t)
        recon = []
        for i in (3, 4, 5):
            t = time.time()
            client.predict(i, V1_STRENGTH, 4, V1_STEPS, V1_GUIDANCE, 0, False, api_name="/reconstruct")
            recon.append(time.time() - t)
        res = {
            "bench": "app_figures", "cold_start_s": round(cold_start, 2), "rss_after_start_mb": round(rss_start),
            "models_loaded_s": round(warm_up, 1),
            "trial_change": {"n": args.trials, "p50_s": round(float(np.median(lat)), 3),
                             "p95_s": round(float(np.percentile(lat, 95)), 3),
                             "server_p50_s": round(float(np.median(server)), 3),
                             "server_p95_s": round(float(np.percentile(server, 95)), 3),
                             "max_kb_sent": round(max(sent) / 1024, 1), "median_kb_sent": round(float(np.median(sent)) / 1024, 1),
                             "what": "gradio_client round trip of /trial (stimulus, caption, objects) + /brain_view "
                                     "(values per voxel for 4 panels); the mesh is a file the browser fetches once"},
            "reconstruct_4_samples_s": {"runs": [round(x, 2) for x in recon], "median": round(float(np.median(recon)), 2),
                                        "what": f"round trip of /reconstruct: 4 samples, {V1_STEPS} steps, strength {V1_STRENGTH:g}, no ridge"},
            "peak_rss_mb": round(peak_rss_mb(app.pid)),
            "rss_at_end_mb": rss_parts_mb(app.pid),
            "machine": machine_info(),
        }
    finally:
        app.terminate()
        app.wait(timeout=30)
        log.close()
    path = save_result("app_figures", res)
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
