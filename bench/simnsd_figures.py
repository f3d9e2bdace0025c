"""Figures for the README: SimNSD's true retinotopy on fsaverage5 and a grid of stimuli with captions.

    python bench/simnsd_figures.py [--data data/simnsd] [--subj 1] [--out docs]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from mindeye import viz  # noqa: E402
from mindeye.data import canonical  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/simnsd")
    p.add_argument("--subj", type=int, default=1)
    p.add_argument("--out", default="docs")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    d = canonical.load_subject(args.data, args.subj)
    gt, g = d.ground_truth(), d.geometry
    fig = viz.retinotopy_figure(gt, g.hemi, g.vertex, title=f"SimNSD subject {args.subj}: simulated retinotopy "
                                                           f"(true pRFs) on fsaverage5, {d.n_voxels} voxels")
    fig.savefig(out / "simnsd_retinotopy.png", dpi=80, bbox_inches="tight")
    _, ids = d.averaged("test")
    ids = ids[:16]
    fig = viz.stimulus_grid(d.images(ids), d.captions(ids), cols=4, title="SimNSD test stimuli and their captions")
    fig.savefig(out / "simnsd_stimuli.png", dpi=80, bbox_inches="tight")
    print(f"wrote {out / 'simnsd_retinotopy.png'} and {out / 'simnsd_stimuli.png'}")


if __name__ == "__main__":
    main()
