"""What a bench figure was measured on: cores, CPU model and flags that matter, GPU, commit, threads; and where
it goes: ``BENCH_QUICK=1`` (set by ``make bench QUICK=1``) is the one switch for the quick run, which shrinks
every bench to a few minutes on 2 cores and writes to bench/results/quick/ (never bench/results/*.json, from
which the README is generated)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"  # the full figures; the README is generated from these


def quick() -> bool:
    """A quick run (``BENCH_QUICK`` set to anything but empty, 0, false or no): small sizes, results in quick/."""
    return os.environ.get("BENCH_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def results_dir() -> Path:
    """bench/results/quick/ on a quick run, else bench/results/ (created either way)."""
    d = RESULTS / "quick" if quick() else RESULTS
    d.mkdir(parents=True, exist_ok=True)
    return d


def result_path(name: str, ext: str = "json") -> Path:
    """Where bench ``name`` writes its result: ``results_dir() / f"{name}.{ext}"``."""
    return results_dir() / f"{name}.{ext}"


def _cpu() -> tuple[str, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "?", []
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return model, sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))


def machine_info() -> dict:
    import torch
    model, flags = _cpu()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except Exception:
        commit = None
    return {"cores": os.cpu_count(), "cpu": model, "cpu_flags": flags, "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "commit": commit,
            # other work on the machine slows every timing: the 1-minute load average when the figure was taken
            "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def save_result(name: str, res: dict) -> Path:
    """Write bench ``name``'s result dict as JSON where this run's results go (a quick run's marked ``"quick": true``)."""
    import json
    path = result_path(name)
    path.write_text(json.dumps({**res, "quick": True} if quick() else res, indent=1))
    return path


def is_shipped(changes: dict, recipe: dict, config_cls) -> bool:
    """Whether a recipe bench's variant (``changes``: every setting the variants differ in) is the shipped
    ``recipe``: each setting as the recipe has it, else as the config class defaults it."""
    return all(recipe.get(k, getattr(config_cls, k)) == v for k, v in changes.items())


def merge_variant_rows(name: str, rows: list[dict], variants) -> list[dict]:
    """A recipe bench's rows after a partial run (``--only``): this run's rows, plus the rows of the other variants
    from its earlier result (variants no longer listed are dropped), in the order of ``variants``. Each row names
    the machine (and commit) that measured it."""
    import json
    here = machine_info()
    rows = [{**r, "machine": here} for r in rows]
    path = result_path(name)
    if path.exists():
        old = json.loads(path.read_text())
        done = {r["variant"] for r in rows}
        rows = rows + [{**r, "machine": r.get("machine", old.get("machine"))} for r in old["rows"]
                       if r["variant"] not in done and r["variant"] in variants]  # each row keeps who measured it
    return sorted(rows, key=lambda r: list(variants).index(r["variant"]))
