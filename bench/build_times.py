"""How long the shipped demo bundle took to build, stage by stage, as its own trainers recorded it.

Every trainer writes its wall-clock time beside the weights it saves (``train_seconds`` in SceneCLIP's and the
judge's meta.json and the decoder's train_meta.json, ``finetune_seconds`` in the VAE's; MindEye runs log
``elapsed_s`` in metrics.jsonl, which the shipped model's .json keeps for its exported epoch and its last one).
This script reads them; it trains nothing, so the figures are those of the build that made assets/demo, on the
machine it ran on. Stage-1 of the hidden model (its BrainNetwork alone) is read from the build's run folder
(cache/build/train_logs) when this machine built it. A stage whose time was not recorded says so.

    .venv/bin/python bench/build_times.py

Writes bench/results/build_times.json (or bench/results/quick/ on a quick run: the same figures).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine_info, save_result  # noqa: E402


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_elapsed(metrics: Path) -> float | None:
    try:
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    except (OSError, ValueError):
        return None
    ep = [x for x in lines if "elapsed_s" in x and "val_loss" in x]
    return ep[-1]["elapsed_s"] if ep else None


def stages(bundle: Path, runs: Path) -> list[dict]:
    out = []

    def add(stage, seconds, source, detail=""):
        out.append({"stage": stage, "seconds": None if seconds is None else round(float(seconds), 1),
                    "source": source, "detail": detail})

    clip = _json(bundle / "clip" / "meta.json") or {}
    steps = [t.get("steps") for t in clip.get("train", [])]
    add("SceneCLIP", clip.get("train_seconds"), "clip/meta.json train_seconds", " + ".join(map(str, steps)) + " steps")
    vae = _json(bundle / "decoder" / "vae" / "train_meta.json") or {}
    add("VAE (phase 1)", vae.get("train_seconds"), "decoder/vae/train_meta.json train_seconds",
        f"{vae.get('train', {}).get('steps', '?')} steps" if "train" in vae else "")
    add("VAE decoder fine-tune", vae.get("finetune_seconds"), "decoder/vae/train_meta.json finetune_seconds",
        f"{vae.get('decoder_finetune', {}).get('steps', '?')} steps")
    judge = _json(bundle / "judge" / "meta.json") or {}
    add("judge", judge.get("train_seconds"), "judge/meta.json train_seconds",
        f"{judge.get('train', {}).get('steps', '?')} steps")
    dec = _json(bundle / "decoder" / "train_meta.json") or {}
    add("decoder UNet (with encoding the scene bank)", dec.get("train_seconds"), "decoder/train_meta.json train_seconds",
        f"{dec.get('train', {}).get('steps', '?')} steps")
    add("MindEye hidden, stage 1 (BrainNetwork)", _last_elapsed(runs / "demo_hidden_v2c" / "metrics.jsonl"),
        "cache/build/train_logs/demo_hidden_v2c/metrics.jsonl elapsed_s")
    for name in ("hidden", "final", "lowlevel"):
        syn = ((_json(bundle / "mindeye" / f"{name}.json") or {}).get("data") or {}).get("synthetic")
        if syn:  # built before training (or read from the cache); its time is not in the run's elapsed_s
            label = "low-level model" if name == "lowlevel" else f"MindEye {name}"
            add(f"{label}, synthetic trials (encoding model + unseen scenes)", syn.get("build_seconds"),
                f"mindeye/{name}.json data.synthetic.build_seconds", f"{syn.get('n', 0):,} trials")
    for name, label in (("hidden", "MindEye hidden, stage 2 (diffusion prior)"), ("final", "MindEye final"),
                        ("lowlevel", "low-level model")):
        m = _json(bundle / "mindeye" / f"{name}.json") or {}
        last = m.get("last_epoch") or {}
        add(label, last.get("elapsed_s"), f"mindeye/{name}.json last_epoch.elapsed_s",
            f"{(last.get('epoch') or 0) + 1} epochs" if last else "")
    return out


def _minutes(seconds) -> str:
    return "not recorded" if seconds is None else f"{seconds / 60:.0f} min"


def main():
    bundle, runs = ROOT / "assets" / "demo", ROOT / "cache" / "build" / "train_logs"
    rows = stages(bundle, runs)
    # a stage read from a run folder that only the building machine has (cache/build) keeps the figure this script
    # read there, from the committed results, as long as the model it describes is the one shipped
    path = ROOT / "bench" / "results" / "build_times.json"
    before = {r["stage"]: r for r in (_json(path) or {}).get("stages", [])}
    for r in rows:
        old = before.get(r["stage"])
        if r["seconds"] is None and r["source"].startswith("cache/") and old and old.get("seconds") is not None:
            r["seconds"] = old["seconds"]
            note = "read on the machine that built it"
            r["detail"] = ", ".join(x for x in ((old.get("detail") or "").replace(note, "").strip(" ,"), note) if x)
    known = [r["seconds"] for r in rows if r["seconds"] is not None]
    res = {"bench": "build_times", "bundle": "assets/demo", "stages": rows, "total_recorded_seconds": round(sum(known), 1),
           "note": "times recorded by the trainers when the shipped bundle was built (CPU; fp32, or bf16 where the CPU has native bf16); read, not re-run",
           "machine": machine_info()}
    for r in rows:
        print(f"{r['stage']:45s} {_minutes(r['seconds']):>14s}  {r['detail']}")
    print(f"wrote {save_result('build_times', res)}")


if __name__ == "__main__":
    main()
