"""Simulate every SimNSD subject at the default size and print the oracle ceiling, noise ceiling and timing.

    python bench/simnsd_oracle.py [--out data/simnsd] [--subj 1 2 5 7]
"""
from __future__ import annotations

import argparse
import time

from mindeye.data.simnsd import SUBJECTS, SimConfig, simulate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="data/simnsd")
    p.add_argument("--subj", type=int, nargs="+", default=list(SUBJECTS))
    p.add_argument("--force", action="store_true", help="re-simulate to time it")
    args = p.parse_args()
    rows = []
    for s in args.subj:
        t = time.time()
        summary = simulate(args.out, SimConfig(subj=s), force=args.force, log=lambda *a: None)
        rows.append((summary, time.time() - t))
    print("| subject | voxels | trials | oracle 300-way top-1, 3-trial avg | single trial | median ncsnr | "
          "median NC 1 trial | median NC 3 trials | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s, dt in rows:
        print(f"| {s['subject']} | {s['n_voxels']} | {s['n_trials']} | {100 * s['oracle_top1_averaged']:.1f}% | "
              f"{100 * s['oracle_top1_single_trial']:.1f}% | {s['median_ncsnr']:.3f} | "
              f"{s['median_noise_ceiling_1trial']:.1f}% | {s['median_noise_ceiling_3trials']:.1f}% | {dt:.0f} |")


if __name__ == "__main__":
    main()
