"""The resident engine: one per process, holds the bundle's data (and later its models) so the UI and the
CLIs ask it for trials, maps and pictures instead of touching files themselves."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .data import canonical
from .data.cortex import AREAS
from .data.errors import DataError
from .viz import VIEWS  # noqa: F401  (the surface views the UI offers)

RESPONSES = ("average of 3 repetitions", "repetition 1", "repetition 2", "repetition 3")
MAPS = ("response", "noise-free response (simulator)", "true polar angle", "true eccentricity", "visual areas", "noise ceiling (ncsnr)")


class Model(str, Enum):
    """The models a bundle can name (its ``models`` keys)."""
    CLIP = "clip"
    JUDGE = "judge"
    HIDDEN = "mindeye_hidden"
    FINAL = "mindeye_final"
    LOWLEVEL = "lowlevel"
    DECODER = "decoder"


class Source(str, Enum):
    """Where a reconstruction's CLIP hidden tokens come from."""
    MINDEYE = "mindeye"  # BrainNetwork + diffusion prior
    RIDGE = "ridge"  # the linear baseline
    TRUE = "true"  # the seen image's own tokens: the decoder's ceiling


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
        self._models: dict = {}
        self._pipelines: dict = {}
        self._lock = threading.RLock()
        self._ridge_lock = threading.Lock()

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
        if view not in VIEWS:
            raise DataError(f"unknown view {view!r}; expected one of {list(VIEWS)}")
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


    # ----------------------------------------------------------------------------------------- models
    def model_path(self, key: Model) -> Path:
        rel = self.bundle.models.get(Model(key).value)
        if not rel:
            raise DataError(f"bundle {self.bundle.name!r} names no {Model(key).value} model "
                            f"(its models: {sorted(self.bundle.models)})")
        return self.bundle.resolve(rel)

    def model(self, key: Model):
        """A bundle model, loaded on first use and kept resident (thread-safe). MindEye models are checked
        against the loaded subject's data fingerprint: weights for another subject are refused."""
        key = Model(key)
        with self._lock:
            if key not in self._models:
                self._models[key] = self._load(key, self.model_path(key))
            return self._models[key]

    def _load(self, key: Model, path: Path):
        import torch
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if dev == "cuda" else torch.float32
        if key == Model.CLIP:
            from .models.scene_clip import SceneCLIP
            return SceneCLIP.load(path, device=dev)
        if key == Model.JUDGE:
            from .models.judge import SceneJudge
            return SceneJudge.load(path)
        if key == Model.DECODER:
            from .models.decoder import UnclipDecoder
            return UnclipDecoder.from_pretrained(path, device=dev, dtype=dtype)
        from .checkpoints import load_model
        model, meta = load_model(path, expect={"subject": self.bundle.subject, "n_voxels": self.data.n_voxels,
                                               "fingerprint": self.data.fingerprint()}, device=dev)
        model.meta = meta
        return model

    def ridge(self, log=print):
        """The ridge baseline on the hidden target, fitted on the train split (alpha by CV on it), cached.

        The fit takes minutes on a fresh machine; it holds its own lock, so other tabs keep working meanwhile."""
        import torch

        from .atomic import atomic_save
        from .data.splits import selection_split
        from .models.ridge import RidgeModel, fit_ridge
        from .train import cache_root, clip_targets, file_sha256
        with self._ridge_lock:
            if "ridge" in self._models:
                return self._models["ridge"]
            clip = self.model(Model.CLIP)
            # the same target key as training runs and the benches use, so their cached targets serve here too
            tag = f"{self.data.fingerprint()}_SceneCLIP{file_sha256(self.model_path(Model.CLIP) / 'model.safetensors')[:8]}_hidden"
            path = cache_root() / "ridge" / f"{tag}.pt"
            model = None
            if path.exists():
                try:
                    model = RidgeModel.from_state_dict(torch.load(path, weights_only=True))
                except Exception:
                    path.unlink(missing_ok=True)
            if model is None:
                log("fitting the ridge baseline (voxels -> CLIP hidden tokens; once, then cached)")
                split = selection_split(self.data)
                x, ids = self.data.average_trials(split.train_trials)
                y = clip_targets(clip, self.data.images(ids), True, True, cache_root() / "clip_targets",
                                 f"{tag}_train_aug0", log=log)[:, 0]
                model = fit_ridge(x, y.numpy())
                atomic_save(model.state_dict(), path, torch.save)
            self._models["ridge"] = model
            return model

    def use_model(self, key: Model, model) -> None:
        """Serve ``model`` (already loaded and checked) as the bundle's ``key`` model from now on."""
        with self._lock:
            self._models[Model(key)] = model
            self._pipelines.clear()

    def _lowlevel(self):
        return self.model(Model.LOWLEVEL) if Model.LOWLEVEL.value in self.bundle.models else None

    def pipeline(self, source: Source = Source.MINDEYE):
        """The reconstruction pipeline for a source of hidden tokens (models stay resident)."""
        from .pipelines.reconstruction import PriorHidden, ReconstructionPipeline, RidgeHidden
        source = Source(source)
        if source == Source.TRUE:
            raise DataError("true-token reconstructions need the images: use reconstruct(..., source='true')")
        with self._lock:
            if source not in self._pipelines:
                hidden = PriorHidden(self.model(Model.HIDDEN)) if source == Source.MINDEYE else RidgeHidden(self.ridge())
                self._pipelines[source] = ReconstructionPipeline(hidden, self.model(Model.DECODER), self.model(Model.CLIP),
                                                                 self._lowlevel())
            return self._pipelines[source]

    def reconstruct(self, indices, source: Source = Source.MINDEYE, strength: float = 0.85, n: int = 4,
                    steps: int = 20, guidance: float = 3.5, seed: int = 0, progress=None):
        """Reconstructions of test trials ``indices`` (positions in the test set) from their averaged betas."""
        from .pipelines.reconstruction import ReconstructionPipeline, TrueHidden
        idx = np.atleast_1d(np.asarray(indices))
        if idx.dtype.kind not in "iu" or (idx < 0).any() or (idx >= self.n_test).any():
            raise DataError(f"test trials must be integers in 0-{self.n_test - 1}, got {indices!r}")
        voxels = self.test_betas[idx]
        source = Source(source)
        if source == Source.TRUE:
            from .data.stream import to_model_input
            images = to_model_input(self.data.images(self.test_ids[idx]))
            pipe = ReconstructionPipeline(TrueHidden(self.model(Model.CLIP), images), self.model(Model.DECODER),
                                          self.model(Model.CLIP), self._lowlevel())
        else:
            pipe = self.pipeline(source)
        return pipe(voxels, strength=strength, n=n, steps=steps, guidance=guidance, seed=seed, progress=progress)


    # ----------------------------------------------------------------------------------------- retrieval
    def test_image_embeddings(self, target: str = "final"):
        """CLIP embeddings of every test image (``final`` [N, D] or ``hidden`` [N, T, D]), computed once."""
        import torch
        key = f"test_{target}"
        with self._lock:
            if key not in self._models:
                clip = self.model(Model.CLIP)
                fn = clip.final if target == "final" else clip.hidden
                with torch.no_grad():
                    self._models[key] = torch.cat([fn(self.data.images(self.test_ids[i:i + 250])).float().cpu()
                                                   for i in range(0, self.n_test, 250)])
            return self._models[key]

    def brain_embeddings(self, target: str = "final"):
        """Every test trial's brain-predicted embedding (the MindEye model's projector output), computed once."""
        import torch
        key = f"brain_{target}"
        with self._lock:
            if key not in self._models:
                m = self.model(Model.FINAL if target == "final" else Model.HIDDEN)
                v2c = getattr(m, "voxel2clip", None) or m
                p = next(v2c.parameters())
                with torch.no_grad():
                    self._models[key] = torch.cat([v2c(torch.from_numpy(self.test_betas[i:i + 250]).to(p.device, p.dtype))[1]
                                                   .float().cpu() for i in range(0, self.n_test, 250)])
            return self._models[key]

    def retrieve(self, index: int, k: int = 8, target: str = "final"):
        """Image retrieval for one test trial over the test set: ``(ids [k], scores [k], rank of the seen image)``."""
        from .pipelines.retrieval import Retriever
        if target not in ("final", "hidden"):
            raise DataError(f"retrieval target should be 'final' or 'hidden', got {target!r}")
        self.test_trial(index)  # range check with a clear message
        with self._lock:
            key = f"retriever_{target}"
            if key not in self._models:
                self._models[key] = Retriever(self.test_image_embeddings(target), self.test_ids)
            r = self._models[key]
        q = self.brain_embeddings(target)[int(index)]
        scores, ids = r.topk(q[None], k)
        return ids[0], scores[0], r.rank_of(q, int(self.test_ids[int(index)]))

    def brain_retrieve(self, index: int, k: int = 8, target: str = "final"):
        """Brain retrieval for one test image: which trials' brain embeddings are nearest its CLIP embedding?
        ``(trial indices [k], scores [k], rank of its own trial)``."""
        from .pipelines.retrieval import Retriever
        self.test_trial(index)
        with self._lock:
            key = f"brain_retriever_{target}"
            if key not in self._models:
                self._models[key] = Retriever(self.brain_embeddings(target), np.arange(self.n_test))
            r = self._models[key]
        q = self.test_image_embeddings(target)[int(index)]
        scores, trials = r.topk(q[None], k)
        return trials[0], scores[0], r.rank_of(q, int(index))


_ENGINE: Engine | None = None


def get_engine(bundle_path: Path | str | None = None, data_path: Path | str | None = None) -> Engine:
    """The process-wide engine (created on first call)."""
    global _ENGINE
    if _ENGINE is None:
        from .bundle import DEMO_BUNDLE

        _ENGINE = Engine(Bundle.load(bundle_path or DEMO_BUNDLE, data_path))
    return _ENGINE
