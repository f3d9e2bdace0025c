"""The resident engine: one per process, holds the bundle's data (and later its models) so the UI and the
CLIs ask it for trials, maps and pictures instead of touching files themselves."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .data import canonical
from .data.cortex import AREAS
from .data.errors import DataError

RESPONSES = ("average of 3 repetitions", "repetition 1", "repetition 2", "repetition 3")
MAPS = ("response", "noise-free response (simulator)", "true polar angle", "true eccentricity", "visual areas", "noise ceiling (ncsnr)")


@dataclass
class TestTrial:
    index: int  # position in the test set, 0..n_test-1
    image_id: int
    image: np.ndarray  # [H, W, 3] uint8
    caption: str
    labels: dict


def _device() -> str:
    try:
        import torch

        return f"CUDA ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU"
    except ImportError:
        return "CPU"


class Engine:
    def __init__(self, bundle: Bundle, simulate_if_missing: bool = True, log=print):
        self.bundle = bundle
        if not canonical.subject_file(bundle.data_path, bundle.subject).exists():
            if bundle.dataset_kind != "simnsd" or not simulate_if_missing:
                raise DataError(f"{canonical.subject_file(bundle.data_path, bundle.subject)}: not found; "
                                f"convert your NSD download first (python -m mindeye convert ...)")
            from .data.simnsd import SimConfig, simulate

            log(f"SimNSD subject {bundle.subject} not found in {bundle.data_path}: simulating it (about a minute)")
            simulate(bundle.data_path, SimConfig(subj=bundle.subject, seed=bundle.seed), log=log)
        self.data = canonical.load_subject(bundle.data_path, bundle.subject)
        self.test_betas, self.test_ids = self.data.averaged("test")
        self._reps, rep_ids = self.data.repetitions("test", 3)
        self._rep_row = {int(i): k for k, i in enumerate(rep_ids)}
        self.ground_truth = self.data.ground_truth()
        self.device = _device()

    # ----------------------------------------------------------------------------------------- summary
    @property
    def n_test(self) -> int:
        return len(self.test_ids)

    def describe(self) -> str:
        d, b = self.data, self.bundle
        return (f"**{b.name}** · {self.data.manifest.get('dataset', '?')} subject {b.subject} · "
                f"{d.n_voxels:,} voxels · {d.n_trials:,} trials · {self.n_test} test images · device: {self.device}")

    @property
    def has_surface(self) -> bool:
        return self.data.geometry.known

    # ----------------------------------------------------------------------------------------- trials
    def test_trial(self, index: int) -> TestTrial:
        if not 0 <= int(index) < self.n_test:
            raise DataError(f"test trial {index} out of range: this subject has {self.n_test} test images (0-{self.n_test - 1})")
        image_id = int(self.test_ids[int(index)])
        return TestTrial(int(index), image_id, self.data.images([image_id])[0], self.data.captions([image_id])[0],
                         {k: v[0] for k, v in self.data.labels([image_id]).items()})

    def response(self, index: int, which: str = RESPONSES[0]) -> np.ndarray:
        """Betas [V] of one test image: the 3-repetition average or a single repetition."""
        if which == RESPONSES[0]:
            return self.test_betas[int(index)]
        if which not in RESPONSES:
            raise DataError(f"unknown response {which!r}; expected one of {RESPONSES}")
        row = self._rep_row.get(int(self.test_ids[int(index)]))
        if row is None:
            raise DataError(f"test image {self.test_ids[int(index)]} was not seen 3 times")
        return self._reps[row, RESPONSES.index(which) - 1]

    def brain_map(self, index: int, which_map: str = MAPS[0], response: str = RESPONSES[0], view: str = "posterior"):
        """Plotly figure of a per-voxel map on the inflated fsaverage5 surface."""
        from . import viz

        if not self.has_surface:
            raise DataError("this dataset has no voxel -> fsaverage5 mapping, so there is no surface to draw on "
                            "(convert with --vertex_map FILE.npz to add one)")
        g, gt = self.data.geometry, self.ground_truth
        if which_map == "response":
            vals = self.response(index, response)
            return viz.surface_figure(vals, g.hemi, g.vertex, view=view, vmax=3.0, colorbar_title="beta (z)")
        if which_map != "noise ceiling (ncsnr)" and not gt:
            raise DataError(f"{which_map!r} is simulator ground truth; real NSD has none")
        if which_map == "noise-free response (simulator)":
            row = np.flatnonzero(gt["test_image_id"] == self.test_ids[int(index)])
            if not len(row):
                raise DataError(f"no stored noise-free response for test image {self.test_ids[int(index)]}")
            return viz.surface_figure(gt["test_noise_free"][row[0]], g.hemi, g.vertex, view=view, vmax=3.0,
                                      colorbar_title="signal (SD)")
        if which_map == "true polar angle":
            return viz.surface_figure(gt["polar_angle"], g.hemi, g.vertex, view=view, cmap="hsv", vmax=180,
                                      colorbar_title="deg")
        if which_map == "true eccentricity":
            return viz.surface_figure(gt["eccentricity"], g.hemi, g.vertex, view=view, cmap="viridis",
                                      symmetric=False, vmax=float(gt["eccentricity"].max()), colorbar_title="ecc")
        if which_map == "visual areas":
            return viz.surface_figure(gt["area"].astype(np.float32) + 1, g.hemi, g.vertex, view=view, cmap="tab10",
                                      symmetric=False, vmax=10, colorbar_title=" ".join(f"{i + 1}={a}" for i, a in enumerate(AREAS)))
        if which_map == "noise ceiling (ncsnr)":
            nc = gt.get("ncsnr_measured")
            if nc is None:
                reps, _ = self.data.repetitions("test", 3)
                from .data.simnsd import noise_ceiling

                nc = noise_ceiling(reps)["ncsnr"]
            return viz.surface_figure(nc, g.hemi, g.vertex, view=view, cmap="inferno", symmetric=False,
                                      vmax=float(np.percentile(nc, 99)), colorbar_title="ncsnr")
        raise DataError(f"unknown map {which_map!r}; expected one of {MAPS}")


_ENGINE: Engine | None = None


def get_engine(bundle_path: Path | str | None = None, data_path: Path | str | None = None) -> Engine:
    """The process-wide engine (created on first call)."""
    global _ENGINE
    if _ENGINE is None:
        from .bundle import DEMO_BUNDLE

        _ENGINE = Engine(Bundle.load(bundle_path or DEMO_BUNDLE, data_path))
    return _ENGINE
