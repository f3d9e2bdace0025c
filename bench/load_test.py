"""Simulated students against a running app: each one a gradio_client session that browses trials, retrieves
and now and then reconstructs, for a fixed time, while one training run goes on. Counts errors and reports
latency per endpoint (p50 / p95), so we know the queue keeps reconstruction from starving trial browsing.

    .venv/bin/python bench/load_test.py [--students 30] [--seconds 60] [--no-train]

Starts the app on the demo bundle on a free loopback port; writes bench/results/load_test.json. Quick run
(``BENCH_QUICK=1``): 6 students for 20 s, into bench/results/quick/.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.machine import quick  # noqa: E402

# what one student does, with weights: mostly browsing, some retrieval, a few reconstructions
MIX = (("trial", 0.70), ("retrieve", 0.25), ("reconstruct", 0.05))


def student(url: str, n_test: int, until: float, seed: int, out: list, recon_steps: int):
    from gradio_client import Client
    rng = random.Random(seed)
    client = Client(url, verbose=False)
    names, weights = zip(*MIX)
    while time.time() < until:
        what = rng.choices(names, weights)[0]
        trial = rng.randrange(n_test)
        t0 = time.time()
        try:
            if what == "trial":
                client.predict(trial, api_name="/trial")
            elif what == "retrieve":
                client.predict(trial, 8, rng.choice(["final", "hidden"]), "image retrieval", api_name="/retrieve")
            else:
                client.predict(trial, 0.85, 1, recon_steps, 3.5, 0, False, api_name="/reconstruct")
            out.append((what, time.time() - t0, None))
        except Exception as e:  # every error counts; the message says which
            out.append((what, time.time() - t0, f"{type(e).__name__}: {e}"[:300]))


def run_load(url: str, n_test: int, students: int, seconds: float, recon_steps: int = 20) -> dict:
    """``students`` concurrent sessions for ``seconds`` against ``url``: requests, errors and latency per endpoint."""
    import numpy as np
    calls: list = []
    until = time.time() + seconds
    threads = [threading.Thread(target=student, args=(url, n_test, until, i, calls, recon_steps), daemon=True)
               for i in range(students)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 600)
    out = {"students": students, "seconds": seconds, "requests": len(calls),
           "errors": sum(e is not None for _, _, e in calls),
           "error_examples": sorted({e for _, _, e in calls if e})[:5], "endpoints": {}}
    for name, _ in MIX:
        lat = np.array([dt for w, dt, e in calls if w == name and e is None])
        out["endpoints"][name] = {"requests": int(sum(w == name for w, _, _ in calls)),
                                  "p50_s": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
                                  "p95_s": round(float(np.percentile(lat, 95)), 3) if len(lat) else None}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", type=int, default=6 if quick() else 30)
    p.add_argument("--seconds", type=float, default=20 if quick() else 60)
    p.add_argument("--no-train", dest="train", action="store_false", help="no training run alongside")
    args = p.parse_args()
    import resource

    from app import build_app
    from bench.machine import machine_info, save_result
    from mindeye.engine import get_engine
    from tests.conftest import free_port
    engine = get_engine()
    t = time.time()
    engine.warm_up()  # as `python app.py` does once its page is served: a class meets a warm app
    warm_up_s = round(time.time() - t, 1)
    demo = build_app(engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    name = None
    try:
        if args.train:
            from gradio_client import Client
            name = f"load_test_{int(time.time())}"
            Client(url, verbose=False).predict("demo", name, engine.bundle.subject, 20, 64, 1e-3, 0.33, False, False,
                                               "", api_name="/train_start")
        res = run_load(url, engine.n_test, args.students, args.seconds)
        train_status = engine.runs.status(name).status if name else None
    finally:
        if name and engine.runs.status(name).status == "running":
            engine.runs.cancel(name)
        demo.close()
    res.update(bench="load_test", warm_up_s=warm_up_s, training_run_alongside=bool(name), training_status_at_end=train_status,
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), machine=machine_info())
    path = save_result("load_test", res)
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
