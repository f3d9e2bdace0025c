"""Top-k retrieval latency over large pools: exact torch vs FAISS exact (flat) vs the approximate IVF index
the project uses for pools of 200k or more (``mindeye.pipelines.retrieval``), with each FAISS index's
recall@10 against exact search.

    OMP_NUM_THREADS=1 python bench/retrieval_latency.py [--sizes 1000 100000 1000000] [--queries 50]

Pools are random unit vectors (dim 128, SceneCLIP's final embedding size), the worst case for an IVF index:
they have no cluster structure, so the true neighbours of a query are spread over many cells. CLIP
embeddings of real or procedural images are clustered; ``--pool PATH`` adds rows over a built pool folder
queried with what the app sends it, the final model's brain embeddings of test trials.
Latency is per query (one query at a time, k=16, median and 90th percentile over ``--queries``).
Writes bench/results/retrieval_latency.json. Quick run (``BENCH_QUICK=1``): pools of 1k and 100k, 20 queries,
into bench/results/quick/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine_info, quick, result_path  # noqa: E402

K, RECALL_AT, DIM = 16, 10, 128


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def timed(fn, queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Median and p90 milliseconds per single query, and the ids found ``[Q, K]``."""
    for q in queries[:3]:  # warm-up
        fn(q[None])
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(fn(q[None]))
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times)), float(np.percentile(times, 90)), np.concatenate(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:RECALL_AT]) & set(t[:RECALL_AT])) / RECALL_AT for f, t in zip(found, truth)]))


def bench_pool(name: str, emb: np.ndarray, queries: np.ndarray, nprobes, log=print) -> list[dict]:
    import faiss
    import torch

    from mindeye.pipelines.retrieval import IVF_NPROBE, build_ivf, ivf_nlist
    n = len(emb)
    rows = []
    e = torch.from_numpy(emb)

    def exact(q):
        return (torch.from_numpy(q) @ e.T).topk(K, dim=1).indices.numpy()

    med, p90, truth = timed(exact, queries)
    rows.append({"pool": name, "n": n, "method": "exact (torch matmul + topk)", "ms_median": round(med, 3),
                 "ms_p90": round(p90, 3), "recall@10": 1.0, "build_s": 0.0})
    log(rows[-1])

    t = time.perf_counter()
    flat = faiss.IndexFlatIP(emb.shape[1])
    flat.add(emb)
    build = time.perf_counter() - t
    med, p90, found = timed(lambda q: flat.search(q, K)[1], queries)
    rows.append({"pool": name, "n": n, "method": "FAISS IndexFlatIP (exact)", "ms_median": round(med, 3),
                 "ms_p90": round(p90, 3), "recall@10": round(recall(found, truth), 4), "build_s": round(build, 2)})
    log(rows[-1])
    flat.reset()  # frees its copy of the vectors

    t = time.perf_counter()
    ivf = build_ivf(emb)
    build = time.perf_counter() - t
    for nprobe in sorted({min(p, ivf.nlist) for p in nprobes}):
        ivf.nprobe = nprobe
        med, p90, found = timed(lambda q: ivf.search(q, K)[1], queries)
        rows.append({"pool": name, "n": n, "method": f"FAISS IVF-Flat, {ivf.nlist} cells, nprobe {nprobe}"
                     + (" (the project's default)" if nprobe == min(IVF_NPROBE, ivf.nlist) else ""),
                     "nlist": int(ivf.nlist), "nprobe": int(nprobe), "ms_median": round(med, 3), "ms_p90": round(p90, 3),
                     "recall@10": round(recall(found, truth), 4), "build_s": round(build, 2)})
        log(rows[-1])
    assert ivf_nlist(n) == ivf.nlist
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000] if quick() else [1_000, 100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=20 if quick() else 50,
                   help="single queries timed per method (default: 50; quick run: 20)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256], help="IVF cells scanned, each a row")
    p.add_argument("--pool", default=None,
                   help="also a built pool folder, queried with the bundle's brain embeddings of the first test trials")
    p.add_argument("--bundle", default=None, help="bundle for --pool's queries (default: assets/demo)")
    p.add_argument("--out", default=str(result_path("retrieval_latency")))
    args = p.parse_args()
    import torch

    from mindeye.pipelines.retrieval import APPROX_FROM, FAISS_FROM, IVF_NPROBE
    rng = np.random.default_rng(0)
    queries = unit(rng.standard_normal((args.queries, DIM), dtype=np.float32))
    rows = []
    for n in args.sizes:
        emb = unit(rng.standard_normal((n, DIM), dtype=np.float32))
        rows += bench_pool(f"random unit vectors, dim {DIM}", emb, queries, args.nprobe)
        del emb
    if args.pool:  # a real pool, queried with what the app sends it: the final model's brain embeddings
        from mindeye.bundle import DEMO_BUNDLE, Bundle
        from mindeye.engine import Engine
        engine = Engine(Bundle.load(args.bundle or DEMO_BUNDLE), log=lambda *a: None)
        q = unit(engine.brain_embeddings("final")[: args.queries].flatten(1).numpy())
        emb = unit(np.load(Path(args.pool) / "embeddings.npy").astype(np.float32))
        rows += bench_pool(f"pool {args.pool} (SceneCLIP scenes; queries: brain embeddings of test trials)", emb, q,
                           args.nprobe)
    res = {"bench": "retrieval_latency", "k": K, "recall_at": RECALL_AT, "dim": DIM, "queries": args.queries,
           "faiss_from": FAISS_FROM, "approx_from": APPROX_FROM, "default_nprobe": IVF_NPROBE,
           "note": "latency per single query; recall@10 against exact search; random unit vectors are the "
                   "worst case for IVF (no cluster structure)",
           "rows": rows, "machine": {**machine_info(), "torch_threads": torch.get_num_threads()}}
    if quick():
        res["quick"] = True
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")
    for r in rows:
        print(f"{r['n']:>9,}  {r['method']:<58} {r['ms_median']:>9.3f} ms  recall@10 {r['recall@10']:.3f}")


if __name__ == "__main__":
    main()
