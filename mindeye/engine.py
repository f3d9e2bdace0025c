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
from .pipelines.settings import V1_GUIDANCE, V1_STEPS, V1_STRENGTH
from .surface import VIEWS  # noqa: F401  (the surface views the UI offers)

RESPONSES = ("average of 3 repetitions", "repetition 1", "repetition 2", "repetition 3")
COMPOSED_SCENE_ID = 999_999_999  # the image id of scenes composed in the app (seeds their background texture)
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


@dataclass
class SceneResponse:
    """A scene composed in the app and, once the simulated cortex has seen it, its response."""
    image: np.ndarray  # [H, W, 3] uint8
    caption: str
    labels: dict
    betas: np.ndarray | None = None  # [V], z-scored like the dataset's
    noise_free: np.ndarray | None = None  # [V], units of signal SD
    noise: float | None = None


def _device() -> str:
    """Where the models run, for the header. Without an NVIDIA driver it is the CPU, known without importing
    torch (half a gigabyte and seconds that a page being served should not wait for)."""
    import os
    import sys
    if "torch" not in sys.modules and not os.path.exists("/proc/driver/nvidia/version"):
        return "CPU"
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
                if not (bundle.data_path / "dataset.json").exists():
                    raise DataError(canonical.not_a_dataset(bundle.data_path))
                raise DataError(f"{canonical.subject_file(bundle.data_path, bundle.subject)}: not found; "
                                f"convert subject {bundle.subject} of your NSD download first (python -m mindeye "
                                f"convert --subj {bundle.subject} ...)")
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
        self._captions_lower: list[str] | None = None
        self._geometry_file: Path | None = None
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

    def find_trials(self, query: str = "", limit: int = 48) -> list[int]:
        """Test trials whose caption contains every word of ``query`` (case-insensitive), first ``limit``."""
        words = [w for w in str(query or "").lower().split() if w]
        caps = self._test_captions()
        hits = [i for i, c in enumerate(caps) if all(w in c for w in words)]
        return hits[: max(0, int(limit))]

    def _test_captions(self) -> list[str]:
        if self._captions_lower is None:  # small; read once
            self._captions_lower = [c.lower() for c in self.data.captions(self.test_ids)]
        return self._captions_lower

    def thumbnails(self, indices, size: int = 96) -> list[np.ndarray]:
        """Test images of ``indices`` as ``size``-pixel thumbnails (uint8)."""
        from PIL import Image
        imgs = self.data.images([int(self.test_ids[int(i)]) for i in indices]) if len(indices) else []
        return [im if im.shape[0] <= size else np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                for im in imgs]

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

    def surface_geometry_file(self) -> Path:
        """The dataset's surface geometry for the browser (``surface.geometry_file``), written once to the cache."""
        from . import surface
        from .bundle import cache_root
        if not self.has_surface:
            raise DataError("this dataset has no voxel -> fsaverage5 mapping, so there is no surface to draw on "
                            "(convert with --vertex_map FILE.npz to add one)")
        if self._geometry_file is None or not self._geometry_file.exists():  # asked on every trial change
            g = self.data.geometry
            self._geometry_file = surface.geometry_file(g.hemi, g.vertex, cache_root() / "app")
        return self._geometry_file

    def brain_view(self, index: int, which_map: str = MAPS[0], response: str = RESPONSES[0],
                   view: str = "posterior") -> dict:
        """One Trials update (``surface.map_panels``): for the response map, the 3-repetition average and each
        repetition side by side (the one named by ``response`` on the 3-D surface); for the simulator's maps,
        that one map. Values only: the mesh is ``surface_geometry_file``, fetched once by the browser."""
        from .surface import VIEWS as SURFACE_VIEWS, map_panels, panel
        if view not in SURFACE_VIEWS:
            raise DataError(f"unknown view {view!r}; expected one of {list(SURFACE_VIEWS)}")
        if which_map not in MAPS:
            raise DataError(f"unknown map {which_map!r}; expected one of {MAPS}")
        if response not in RESPONSES:
            raise DataError(f"unknown response {response!r}; expected one of {RESPONSES}")
        self.test_trial(index)  # range check with a clear message
        gt = self.ground_truth
        if which_map not in ("response", "noise ceiling (ncsnr)") and not gt:
            raise DataError(f"{which_map!r} is simulator ground truth; real NSD has none")
        note = ""
        if which_map == "response":
            reps = [r for r in RESPONSES[1:] if int(self.test_ids[int(index)]) in self._rep_row]
            short = {RESPONSES[0]: "average of 3"}
            panels = [panel(self.response(index, r), short.get(r, r), unit="z", vmax=3.0) for r in (RESPONSES[0], *reps)]
            note = ("beta: the voxel's response to this image, z-scored per session (0 = its average response; "
                    "red above, blue below)")
            return map_panels(panels, [RESPONSES[0], *reps].index(response) if response in [RESPONSES[0], *reps] else 0,
                              view, note)
        if which_map == "noise-free response (simulator)":
            row = np.flatnonzero(gt["test_image_id"] == self.test_ids[int(index)])
            if not len(row):
                raise DataError(f"no stored noise-free response for test image {self.test_ids[int(index)]}")
            p = panel(gt["test_noise_free"][row[0]], "noise-free response", unit="SD", vmax=3.0)
            note = "what the simulated cortex would answer without measurement noise (SD units)"
        elif which_map == "true polar angle":
            p = panel(gt["polar_angle"], "polar angle", kind="cyclic", unit="°", vmin=-180, vmax=180, decimals=0)
            note = ("polar angle of each voxel's receptive field: 0° = right horizontal meridian, 90° = upper "
                    "vertical, ±180° = left horizontal, -90° = lower vertical")
        elif which_map == "true eccentricity":
            p = panel(gt["eccentricity"], "eccentricity", kind="sequential", unit="image half-widths", vmin=0.0,
                      vmax=float(gt["eccentricity"].max()))
            note = "distance of each voxel's receptive field from the centre of gaze, in image half-widths"
        elif which_map == "visual areas":
            p = panel(gt["area"], "visual area", categories=list(AREAS))
            note = "the simulated visual areas: V1-V3 map the image retinotopically; VO, LO and IPS see coarser features"
        else:  # noise ceiling
            nc = gt.get("ncsnr_measured") if gt else None
            if nc is None:
                reps, _ = self.data.repetitions("test", 3)
                from .data.simnsd import noise_ceiling
                nc = noise_ceiling(reps)["ncsnr"]
            p = panel(nc, "noise ceiling (ncsnr)", kind="ceiling", unit="", vmin=0.0,
                      vmax=float(np.percentile(nc, 99)))
            note = "ncsnr: how far each voxel's signal stands above its trial-to-trial noise (NSD's nsdgeneral: ~0.3)"
        return map_panels([p], 0, view, note)

    # ----------------------------------------------------------------------------------------- your scene
    @property
    def is_simulated(self) -> bool:
        """True for SimNSD, whose simulated cortex can answer scenes it never showed."""
        return bool(self.data.attrs.get("sim_config"))

    def sim_subject(self):
        """The simulated subject's true model, rebuilt once from the simulator config stored with the dataset."""
        import json

        from .data.simnsd import SIMULATOR_VERSION, SimConfig, SimSubject
        with self._lock:
            if "sim_subject" not in self._models:
                key = self.data.attrs.get("sim_config")
                if not key or not self.ground_truth:
                    raise DataError("composing a scene needs SimNSD's simulated cortex; this dataset's responses "
                                    "come from a real brain, which cannot be asked about new scenes")
                cfg = json.loads(key)
                if cfg.get("version") != SIMULATOR_VERSION:
                    raise DataError(f"this SimNSD dataset was simulated by version {cfg.get('version')!r} and this "
                                    f"code simulates {SIMULATOR_VERSION!r}: simulate it again (make simulate)")
                cfg["train_reps_p"] = tuple(cfg["train_reps_p"])
                self._models["sim_subject"] = SimSubject.create(SimConfig(**cfg), workers=1)
            return self._models["sim_subject"]

    def compose(self, background: str, objects: list[dict]) -> SceneResponse:
        """A scene from names (``background``; each object ``shape``, ``colour``, ``size``, ``x``, ``y`` in
        0-1 with 0 = left / top), rendered like SimNSD's stimuli. Returns the image, caption and labels."""
        from .data import scenes as S
        if background not in S.BACKGROUNDS:
            raise DataError(f"background should be one of {S.BACKGROUNDS}, got {background!r}")
        if not 1 <= len(objects) <= S.MAX_OBJECTS:
            raise DataError(f"a scene holds 1 to {S.MAX_OBJECTS} objects, got {len(objects)}")
        objs = []
        for k, o in enumerate(objects):
            for field, names in (("shape", S.SHAPES), ("colour", S.COLOUR_NAMES), ("size", S.SIZES)):
                if o.get(field) not in names:
                    raise DataError(f"object {k + 1}: {field} should be one of {names}, got {o.get(field)!r}")
            x, y = (float(np.clip(o.get(a, 0.5), 0.1, 0.9)) for a in ("x", "y"))
            objs.append(S.SceneObject(S.SHAPES.index(o["shape"]), S.COLOUR_NAMES.index(o["colour"]),
                                      S.SIZES.index(o["size"]), x, y, 0.0))
        objs.sort(key=lambda o: -o.size)  # labels list the largest object first, like the dataset's
        scene = S.Scene(image_id=COMPOSED_SCENE_ID, background=S.BACKGROUNDS.index(background), objects=tuple(objs))
        size = int(self.data.images(self.test_ids[:1]).shape[1])
        return SceneResponse(S.render(scene, size=size), scene.caption, {k: v[0] for k, v in S.labels_of([scene]).items()})

    def scene_from_picture(self, picture: np.ndarray) -> SceneResponse:
        """Any picture (uint8 ``[H, W, 3]``, or RGBA / greyscale) as a stimulus: centre-cropped square, resized to
        the dataset's image size. The simulated cortex's early areas see its pixels; its higher areas see the
        scene the judge reads in it (shapes, colours, positions, background; sizes taken as medium), named in
        the caption so nobody mistakes it for the truth."""
        from PIL import Image

        from .data import scenes as S
        a = np.asarray(picture)
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        if a.ndim != 3 or a.shape[-1] not in (3, 4) or min(a.shape[:2]) < 8:
            raise DataError(f"expected a picture [height, width, 3] of at least 8 x 8 pixels, got shape {a.shape}")
        if a.shape[-1] == 4:  # transparent parts on white, as a browser shows them
            alpha = a[..., 3:4].astype(np.float32) / 255
            a = a[..., :3] * alpha + 255 * (1 - alpha)
        a = np.clip(a[..., :3], 0, 255).astype(np.uint8)
        h, w = a.shape[:2]
        side = min(h, w)
        a = a[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        size = int(self.data.images(self.test_ids[:1]).shape[1])
        image = np.array(Image.fromarray(a).resize((size, size), Image.LANCZOS))
        if Model.JUDGE.value not in self.bundle.models:
            raise DataError("reading a picture's objects needs the bundle's scene judge, which this bundle lacks")
        labels = {k: np.asarray(v)[0] for k, v in self.model(Model.JUDGE).predict(image[None]).items()}
        n = int(labels["n_objects"])
        labels["size"] = np.where(np.arange(S.MAX_OBJECTS) < n, 1, -1).astype(np.int8)
        objs = [S.SceneObject(int(labels["shape"][k]), int(labels["colour"][k]), 1, float(labels["x"][k]),
                              float(labels["y"][k]), 0.0) for k in range(n)]
        read = S.Scene(COMPOSED_SCENE_ID, int(labels["background"]), tuple(objs)).caption
        return SceneResponse(image, f"your picture (the judge reads: {read})", labels)

    def respond(self, scene: SceneResponse, noise: float = 0.58, seed: int = 0) -> SceneResponse:
        """The simulated subject's response to ``scene``: betas with ``noise`` times one trial's noise (0 =
        noise-free, 0.58 = an average of 3 repetitions like the test set, 1 = one trial), and its noise-free
        response. Same scene and seed, same answer."""
        from .data.simnsd import respond
        labels = {k: np.asarray(v)[None] for k, v in scene.labels.items()}
        try:
            betas, free = respond(self.sim_subject(), self.ground_truth, scene.image[None], labels, noise,
                                  np.random.default_rng([int(seed), 7]))
        except ValueError as e:
            raise DataError(str(e)) from None
        return SceneResponse(scene.image, scene.caption, scene.labels, betas[0], free[0], float(noise))

    def scene_view(self, resp: SceneResponse, view: str = "posterior") -> dict:
        """A brain-map update (``surface.map_panels``) of a composed scene's response beside its noise-free one."""
        from .surface import VIEWS as SURFACE_VIEWS, map_panels, panel
        if view not in SURFACE_VIEWS:
            raise DataError(f"unknown view {view!r}; expected one of {list(SURFACE_VIEWS)}")
        label = "noise-free" if resp.noise == 0 else f"measured (noise x{resp.noise:.2f})"
        return map_panels([panel(resp.betas, label, unit="z", vmax=3.0),
                           panel(resp.noise_free, "noise-free signal", unit="SD", vmax=3.0)], 0, view,
                          "left: what the scanner would record (z-scored beta); right: the simulated cortex's "
                          "response without measurement noise")

    def decode(self, voxels: np.ndarray, strength: float | None = None, n: int = 4, steps: int = V1_STEPS,
               guidance: float = V1_GUIDANCE, seed: int = 0, progress=None):
        """MindEye's reconstruction of any brain response ``[V]`` or ``[B, V]`` (not only test trials); ``strength``
        None: ``default_strength()``."""
        strength = self._strength(strength)
        v = np.atleast_2d(np.asarray(voxels, np.float32))
        if v.shape[1] != self.data.n_voxels:
            raise DataError(f"a response should have one value per voxel ({self.data.n_voxels}), got {v.shape[1]}")
        return self.pipeline(Source.MINDEYE)(v, strength=strength, n=n, steps=steps, guidance=guidance, seed=seed,
                                             progress=progress)

    def retrieve_voxels(self, voxels: np.ndarray, k: int = 6, target: str = "final"):
        """The test images nearest a brain response's predicted embedding: ``(image ids [k], scores [k])``."""
        import torch
        from .models.voxel2clip import brain_network
        m = self.model(Model.FINAL if target == "final" else Model.HIDDEN)
        v2c = brain_network(m)
        p = next(v2c.parameters())
        with torch.no_grad():
            q = v2c(torch.as_tensor(np.atleast_2d(voxels)).to(p.device, p.dtype))[1].float().cpu()
        scores, ids = self._test_retriever(target).topk(q[:1], k)
        return ids[0], scores[0]

    def _test_retriever(self, target: str):
        """A ``Retriever`` over the test images' CLIP embeddings (built once per target)."""
        from .pipelines.retrieval import Retriever
        if target not in ("final", "hidden"):
            raise DataError(f"retrieval target should be 'final' or 'hidden', got {target!r}")
        with self._lock:
            key = f"retriever_{target}"
            if key not in self._models:
                self._models[key] = Retriever(self.test_image_embeddings(target), self.test_ids)
            return self._models[key]

    def warm_up(self, log=print) -> None:
        """Load the bundle's models and the test set's image and brain embeddings now (the app calls this in the background
        once its page is served), so the first reconstruction or retrieval a student asks for is not also the
        one that loads torch and the weights."""
        import time
        t = time.time()
        try:
            for key in (Model.CLIP, Model.FINAL, Model.HIDDEN, Model.DECODER, Model.LOWLEVEL):
                if key.value in self.bundle.models:
                    self.model(key)
                    release_memory()
            for target, key in (("final", Model.FINAL), ("hidden", Model.HIDDEN)):  # what retrieval looks up
                if key.value in self.bundle.models and Model.CLIP.value in self.bundle.models:
                    self.brain_embeddings(target)
                    release_memory()
                    self.test_image_embeddings(target)
                    release_memory()
        except DataError as e:  # the tab that needs the model says so again when it is used
            log(f"a model did not load: {e}")
            return
        log(f"models loaded in {time.time() - t:.1f} s")

    # ----------------------------------------------------------------------------------------- models
    def model_expect(self) -> dict:
        """What a brain model must have been trained on to decode this dataset (``load_model``'s ``expect``)."""
        return {"subject": self.bundle.subject, "n_voxels": self.data.n_voxels, "fingerprint": self.data.fingerprint()}

    def model_path(self, key: Model) -> Path:
        rel = self.bundle.models.get(Model(key).value)
        if not rel:
            raise DataError(f"bundle {self.bundle.name!r} names no {Model(key).value} model "
                            f"(its models: {sorted(self.bundle.models)})")
        return self.bundle.resolve(rel)

    def _hidden_meta(self) -> dict:
        """The served hidden model's metadata (a run put in service carries its own), else its .json, read
        without loading the model."""
        import json
        served = self._models.get(Model.HIDDEN)
        if served is not None and hasattr(served, "meta"):
            return served.meta
        return json.loads(self.model_path(Model.HIDDEN).with_suffix(".json").read_text())

    def default_strength(self) -> tuple[float, str]:
        """The img2img strength to use when none is given, and where it comes from: the one chosen on val for the
        hidden model being served (bench/recon_strength.py writes it into the model's .json), else V1's."""
        try:
            chosen = self._hidden_meta()["img2img_strength"]
            return float(chosen["strength"]), chosen["chosen_on"]
        except (DataError, OSError, ValueError, KeyError, TypeError):
            return V1_STRENGTH, "V1's default (no strength chosen on val for this model)"

    def _strength(self, strength: float | None) -> float:
        return self.default_strength()[0] if strength is None else strength

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
        model, meta = load_model(path, expect=self.model_expect(), device=dev)
        model.meta = meta
        return model

    def ridge(self, log=print):
        """The ridge baseline on the hidden target, fitted on the train split (alpha by CV on it), cached.

        The fit takes minutes on a fresh machine; it holds its own lock, so other tabs keep working meanwhile."""
        import torch

        from .atomic import atomic_save
        from .data.splits import selection_split
        from .models.ridge import RidgeModel, fit_ridge
        from .bundle import cache_root
        from .train import clip_targets, file_sha256
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
            # brain embeddings (and the retrievers over them) came from the model being replaced
            for k in [k for k in self._models if isinstance(k, str) and k.startswith("brain_")]:
                del self._models[k]

    # ----------------------------------------------------------------------------------------- training runs
    _runs = None

    @property
    def runs(self):
        """The training runs (``mindeye.runs.RunManager``) of the project's runs folder, on this bundle's dataset."""
        from .runs import RunManager
        with self._lock:
            if self._runs is None:
                self._runs = RunManager(bundle=self.bundle.folder, data_path=self.bundle.data_path)
            return self._runs

    @runs.setter
    def runs(self, manager) -> None:
        self._runs = manager

    def use_run(self, name: str) -> str:
        """Serve training run ``name``'s best.pth as the final-layer or hidden model (whichever it trained) in
        every tab from now on; returns a sentence saying which. A run for another subject, dataset or CLIP is
        refused with a DataError."""
        import torch

        from .checkpoints import load_any
        from .train import file_sha256
        path = self.runs.path(name) / "best.pth"
        if not path.exists():
            raise DataError(f"{path}: no best.pth yet (a run writes it after its first epoch)")
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model, meta = load_any(path, expect=self.model_expect(), device=dev)
        except DataError as e:
            raise DataError(f"run {name!r} cannot be used here: the app shows {self.data.manifest.get('dataset', '?')} "
                            f"subject {self.bundle.subject}, and {e}") from None
        cfg, data = meta["config"], meta["data"]
        clip = self.bundle.models.get(Model.CLIP.value)
        if data.get("clip_sha256") and clip:
            have = file_sha256(self.model_path(Model.CLIP) / "model.safetensors")
            if have != data["clip_sha256"]:
                raise DataError(f"{path}: trained on CLIP targets of another SceneCLIP (sha256 {data['clip_sha256']}, "
                                f"this bundle's is {have}): its predictions would not live in this CLIP's space")
        if cfg["hidden"] and not cfg["prior"]:
            raise DataError(f"{path}: a hidden-token run without a diffusion prior cannot draw reconstructions "
                            "(train with the prior on, or train a final-layer run for retrieval)")
        key = Model.HIDDEN if cfg["hidden"] else Model.FINAL
        model.meta = meta
        self.use_model(key, model)
        return (f"run **{name}** (best.pth, after {meta.get('epoch')} epochs) now serves as the "
                f"{'hidden-token model (Reconstruct)' if key == Model.HIDDEN else 'final-layer model (Retrieve)'}")

    def _lowlevel(self):
        return self.model(Model.LOWLEVEL) if Model.LOWLEVEL.value in self.bundle.models else None

    def token_noise_level(self, source: Source) -> float:
        """How far a brain source's tokens sit from the true ones (elementwise RMS on val, written into the hidden
        model's .json by bench/recon_strength.py), told to a decoder trained with a noise-level input; 0 when
        not measured (the decoder then draws them as if they were exact)."""
        try:
            meta = self._hidden_meta()
        except (DataError, OSError, ValueError):
            return 0.0
        return float(meta.get("token_noise_level", {}).get(Source(source).value, 0.0))

    def pipeline(self, source: Source = Source.MINDEYE):
        """The reconstruction pipeline for a source of hidden tokens (models stay resident)."""
        from .pipelines.reconstruction import PriorHidden, ReconstructionPipeline, RidgeHidden
        source = Source(source)
        if source == Source.TRUE:
            raise DataError("true-token reconstructions need the images: use reconstruct(..., source='true')")
        with self._lock:
            if source not in self._pipelines:
                if source == Source.MINDEYE:
                    # the prior's sampling settings chosen on val for this model (bench/prior_sampling.py and
                    # bench/recon_strength.py write them into its .json), else V1's: one draw of the full 100-step
                    # chain without guidance
                    m = self.model(Model.HIDDEN)
                    meta = getattr(m, "meta", {})
                    chosen = meta.get("prior_sampling", {})
                    hidden = PriorHidden(m, steps=chosen.get("steps"), guidance_scale=chosen.get("guidance_scale", 1.0),
                                         average=int(meta.get("prior_average", {}).get("k", 1)),
                                         noise_level=self.token_noise_level(Source.MINDEYE))
                else:
                    hidden = RidgeHidden(self.ridge(), noise_level=self.token_noise_level(Source.RIDGE))
                self._pipelines[source] = ReconstructionPipeline(hidden, self.model(Model.DECODER), self.model(Model.CLIP),
                                                                 self._lowlevel())
            return self._pipelines[source]

    def reconstruct(self, indices, source: Source = Source.MINDEYE, strength: float | None = None, n: int = 4,
                    steps: int = V1_STEPS, guidance: float = V1_GUIDANCE, seed: int = 0, progress=None):
        """Reconstructions of test trials ``indices`` (positions in the test set) from their averaged betas;
        ``strength`` None: ``default_strength()``."""
        strength = self._strength(strength)
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
        try:
            return pipe(voxels, strength=strength, n=n, steps=steps, guidance=guidance, seed=seed, progress=progress)
        finally:
            release_memory()  # up to 16 samples' activations: freed now, not kept for the next student


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
                    self._models[key] = torch.cat([fn(self.data.images(self.test_ids[i:i + EMBED_BATCH])).float().cpu()
                                                   for i in range(0, self.n_test, EMBED_BATCH)])
            return self._models[key]

    def brain_embeddings(self, target: str = "final"):
        """Every test trial's brain-predicted embedding (the MindEye model's projector output), computed once."""
        import torch
        key = f"brain_{target}"
        with self._lock:
            if key not in self._models:
                from .models.voxel2clip import brain_network
                m = self.model(Model.FINAL if target == "final" else Model.HIDDEN)
                v2c = brain_network(m)
                p = next(v2c.parameters())
                with torch.no_grad():
                    self._models[key] = torch.cat([v2c(torch.from_numpy(self.test_betas[i:i + EMBED_BATCH])
                                                       .to(p.device, p.dtype))[1].float().cpu()
                                                   for i in range(0, self.n_test, EMBED_BATCH)])
            return self._models[key]

    def retrieve(self, index: int, k: int = 8, target: str = "final"):
        """Image retrieval for one test trial over the test set: ``(ids [k], scores [k], rank of the seen image)``."""
        r = self._test_retriever(target)
        self.test_trial(index)  # range check with a clear message
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

    def pool(self, spec=None, indice_name: str | None = None):
        """A large retrieval pool, loaded once: a pool folder, a clip-retrieval index folder or server URL
        (default: the bundle's pool). Pool folders built with other CLIP weights than the bundle's are refused."""
        from .pipelines.pool import default_pool, embedder_identity, load_pool
        spec = str(spec) if spec else str(default_pool(self.bundle))
        key = ("pool", spec, indice_name)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_pool(spec, expect=embedder_identity(self.model(Model.CLIP)),
                                              indice_name=indice_name)
            return self._models[key]

    def pool_retrieve(self, indices, pool=None, k: int = 16, size: int | None = None, progress=None):
        """V1's LAION-5B step over a large pool for test trials ``indices``: top ``k`` by the final model's brain
        embedding, then the second-order pick by the hidden model's (a ``pipelines.pool.PoolRetrieval``)."""
        from .pipelines.pool import Pool, retrieve_from_pool
        idx = np.atleast_1d(np.asarray(indices))
        if idx.dtype.kind not in "iu" or (idx < 0).any() or (idx >= self.n_test).any():
            raise DataError(f"test trials must be integers in 0-{self.n_test - 1}, got {indices!r}")
        p = pool if isinstance(pool, Pool) else self.pool(pool)
        has_hidden = Model.HIDDEN in self._models or Model.HIDDEN.value in self.bundle.models
        hidden = self.brain_embeddings("hidden")[idx] if has_hidden else None  # None: no second-order pick
        return retrieve_from_pool(p, self.brain_embeddings("final")[idx], hidden, self.model(Model.CLIP), k=k,
                                  size=size, progress=progress)

    # ----------------------------------------------------------------------------------------- UMAP
    def umap_colourings(self) -> list[str]:
        """What the UMAP points can be coloured by: scene attributes where the dataset has labels."""
        return ([*UMAP_COLOUR_BY, "none"] if self.data.labels(self.test_ids[:1]) else ["none"])

    def umap(self, target: str = "final", log=print) -> tuple[np.ndarray, np.ndarray, bool]:
        """Joint 2-D UMAP of the test images' CLIP embeddings and the brain-predicted ones:
        ``(image_xy [n_test, 2], brain_xy [n_test, 2], from_cache)``. Fitted once per (model, target) and
        cached on disk (keyed by the embeddings themselves, so another model gets its own map)."""
        from .embedding_map import joint_umap
        from .bundle import cache_root
        if target not in ("final", "hidden"):
            raise DataError(f"UMAP target should be 'final' or 'hidden', got {target!r}")
        return joint_umap(self.test_image_embeddings(target), self.brain_embeddings(target),
                          cache_root() / "umap", f"{self.data.fingerprint()}_{target}", log=log)

    def umap_figure(self, target: str = "final", colour_by: str = "none", highlight: int | None = None, log=print):
        """Plotly figure of ``umap(target)``: pairs joined by lines, coloured by a scene attribute, hover
        shows the trial, its image id and caption; ``highlight`` (a test trial) drawn large."""
        from . import viz
        from .data import scenes
        if colour_by not in self.umap_colourings():
            raise DataError(f"cannot colour by {colour_by!r}; expected one of {self.umap_colourings()}")
        if highlight is not None:
            self.test_trial(highlight)
        img_xy, brain_xy, _ = self.umap(target, log=log)
        colours = None
        if colour_by == "none":
            groups = ["test trial"] * self.n_test
        else:
            lab = self.data.labels(self.test_ids)
            if colour_by == "background":
                groups = [scenes.BACKGROUNDS[int(b)] for b in lab["background"]]
            elif colour_by == "number of objects":
                groups = [f"{int(k)} object{'s' if int(k) != 1 else ''}" for k in lab["n_objects"]]
            else:
                key, names = (("shape", scenes.SHAPES) if colour_by == UMAP_COLOUR_BY[0] else ("colour", scenes.COLOUR_NAMES))
                groups = [names[int(v)] if int(v) >= 0 else "none" for v in lab[key][:, 0]]
                if key == "colour":  # the objects' own colours
                    colours = {c: "rgb({},{},{})".format(*scenes.COLOURS[c]) for c in scenes.COLOUR_NAMES}
                    colours["none"] = "lightgrey"
                else:
                    groups_order = [*names, "none"]
                    colours = dict(zip(groups_order, viz.palette(len(groups_order))))
        captions = self.data.captions(self.test_ids)
        hover = [f"image {int(i)} · “{c}”" for i, c in zip(self.test_ids, captions)]
        return viz.embedding_map_figure(img_xy, brain_xy, groups, hover, colours=colours, highlight=highlight,
                                        uirevision=f"umap-{target}")

    # ----------------------------------------------------------------------------------------- evaluation
    @property
    def evaluate_dir(self) -> Path:
        """Where the Evaluate tab's CSV files go (the project's cache; never a user-given path)."""
        from .bundle import cache_root
        return cache_root() / "evaluate"

    def retrieval_scores(self, with_ridge: bool = False) -> dict[str, dict]:
        """300-way top-1 retrieval over the whole test set (the paper's protocol, ``metrics.retrieval_report``)
        for each model the bundle has: ``{"MindEye (final)": {"image": {"mean", "ci95"}, "brain": ...}, ...}``;
        ``with_ridge`` adds the ridge baseline (hidden target; its first use fits it)."""
        from .metrics import retrieval_report
        out = {}
        for name, key, target in (("MindEye (final)", Model.FINAL, "final"), ("MindEye (hidden)", Model.HIDDEN, "hidden")):
            if key.value in self.bundle.models:
                out[name] = retrieval_report(self.brain_embeddings(target), self.test_image_embeddings(target))
        if with_ridge:
            out["ridge (hidden)"] = retrieval_report(self.ridge().predict(self.test_betas), self.test_image_embeddings("hidden"))
        return out

    def evaluate(self, n_trials: int = 20, sources=(Source.MINDEYE, Source.RIDGE, Source.TRUE),
                 strength: float | None = None, samples: int = 1, steps: int = V1_STEPS, guidance: float = V1_GUIDANCE,
                 seed: int = 0, progress=None, log=print):
        """The metric table over test trials ``0..n_trials-1``: each source's reconstructions (true tokens drawn
        from scratch, strength 1: the decoder's ceiling) and the low-level model alone, scored by
        ``evaluation.evaluate_reconstructions``; per-trial scores; 300-way retrieval over the whole test set.
        ``progress(fraction, message)`` is called as it goes. Writes two CSV files under ``evaluate_dir``.
        ``strength`` None: ``default_strength()``."""
        strength = self._strength(strength)
        import torch

        from .data.stream import to_model_input
        from .evaluation import evaluate_reconstructions, per_trial_scores
        from .metrics import N_WAY
        try:
            n_trials, samples, steps, seed = int(n_trials), int(samples), int(steps), int(seed)
            sources = [Source(s) for s in sources]
        except (TypeError, ValueError) as e:
            raise DataError(f"bad evaluation settings: {e}") from None
        if not 1 <= n_trials <= self.n_test:
            raise DataError(f"number of trials should be 1-{self.n_test}, got {n_trials}")
        report = progress or (lambda f, m: None)
        idx = np.arange(n_trials)
        images = self.data.images(self.test_ids[idx])
        originals = to_model_input(images, images.shape[1])
        labels = self.data.labels(self.test_ids[idx]) or None
        clip = self.model(Model.CLIP) if self.bundle.dataset_kind == "simnsd" and Model.CLIP.value in self.bundle.models else None
        judge = self.model(Model.JUDGE) if Model.JUDGE.value in self.bundle.models and labels else None
        chunk = 5
        n_steps, done = len(sources) * -(-n_trials // chunk) + 2, 0
        columns, per_trial = {}, {}
        for source in sources:
            name = EVAL_NAMES[source]
            if source == Source.RIDGE and "ridge" not in self._models:
                report(done / n_steps, "ridge baseline: fitting it (first use only: minutes on a laptop, then cached)")
            picked = []
            for i in range(0, n_trials, chunk):
                report(done / n_steps, f"{name}: drawing trials {i}-{min(i + chunk, n_trials) - 1} of 0-{n_trials - 1}")
                r = self.reconstruct(idx[i:i + chunk], source, strength=1.0 if source == Source.TRUE else float(strength),
                                     n=samples, steps=steps, guidance=guidance, seed=seed + i)
                picked.append(r.picked.float().cpu())
                done += 1
            recons = torch.cat(picked)
            columns[name] = evaluate_reconstructions(recons, originals, clip, judge, labels)
            per_trial[name] = per_trial_scores(recons, originals, clip)
        report(done / n_steps, "scoring the low-level model alone")
        if Model.LOWLEVEL.value in self.bundle.models and Model.HIDDEN.value in self.bundle.models:
            low = self.pipeline(Source.MINDEYE).lowlevel_images(torch.from_numpy(self.test_betas[idx]))
            if low is not None:
                low = low.float().cpu()
                columns[EVAL_LOWLEVEL] = evaluate_reconstructions(low, originals, clip, judge, labels)
                per_trial[EVAL_LOWLEVEL] = per_trial_scores(low, originals, clip)
        done += 1
        report(done / n_steps, "300-way retrieval over the whole test set")
        retrieval = self.retrieval_scores(with_ridge=Source.RIDGE in sources)
        ranks = self._image_ranks() if Model.FINAL.value in self.bundle.models else None
        ev = Evaluation(trials=idx, n_test=self.n_test, n_way=min(N_WAY, self.n_test), columns=columns,
                        per_trial=per_trial, retrieval=retrieval,
                        image_rank=None if ranks is None else ranks[idx],
                        image_ids=self.test_ids[idx], captions=self.data.captions(self.test_ids[idx]),
                        settings=dict(strength=float(strength), samples=samples, steps=steps, guidance=float(guidance),
                                      seed=seed))
        ev.write_csv(self.evaluate_dir, self.bundle.name)
        report(1.0, "done")
        return ev

    def _image_ranks(self) -> np.ndarray:
        """For each test trial, the rank (1 = first) of its seen image among all test images by cosine
        similarity to the brain's final embedding (image retrieval over the whole test set)."""
        import torch.nn.functional as F
        b = F.normalize(self.brain_embeddings("final").flatten(1), dim=-1)
        im = F.normalize(self.test_image_embeddings("final").flatten(1), dim=-1)
        sim = (b @ im.T).numpy()
        return 1 + (sim > np.diag(sim)[:, None]).sum(1)


UMAP_COLOUR_BY = ("shape of the largest object", "colour of the largest object", "background", "number of objects")
EMBED_BATCH = 64  # test images or trials per batch when the engine embeds them (small: a lower memory peak)


def release_memory() -> None:
    """Hand freed heap back to the operating system. glibc keeps what a burst of work (loading weights, embedding
    1000 images) freed, so the app's resident memory would stay at its peak; trimming after each burst keeps it
    near what is in use. A no-op where there is no glibc."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


EVAL_NAMES = {Source.MINDEYE: "MindEye", Source.RIDGE: "ridge", Source.TRUE: "true tokens (ceiling)"}
EVAL_LOWLEVEL = "low-level model alone"


@dataclass
class Evaluation:
    """The Evaluate tab's numbers: reconstruction metrics over test trials ``trials`` (``columns``: method ->
    metric -> value, as ``evaluation.evaluate_reconstructions``), per-trial scores (``per_trial``: method ->
    metric -> [n]), and 300-way retrieval over all ``n_test`` trials (``retrieval``: model -> report)."""
    trials: np.ndarray
    n_test: int
    n_way: int
    columns: dict
    per_trial: dict
    retrieval: dict
    image_rank: np.ndarray | None
    image_ids: np.ndarray
    captions: list
    settings: dict
    csv: Path | None = None
    per_trial_csv: Path | None = None

    def summary_rows(self) -> tuple[list[str], list[list]]:
        """``(header, rows)`` of the summary CSV: one row per metric, one column per method; retrieval rows
        (all test trials) at the end, blank where a method has none."""
        methods = list(dict.fromkeys([*self.columns, *self.retrieval]))
        metrics = list(dict.fromkeys(m for c in self.columns.values() for m in c))
        rows = [[m, *[self.columns.get(k, {}).get(m, "") for k in methods]] for m in metrics]
        for d in ("image", "brain"):
            rows.append([f"{d} retrieval top-1 ({self.n_way}-way, all {self.n_test} test trials)",
                         *[self.retrieval[k][d]["mean"] if k in self.retrieval else "" for k in methods]])
        rows.append([f"retrieval chance (1/{self.n_way})", *[1 / self.n_way if k in self.retrieval else "" for k in methods]])
        return ["metric", *methods], rows

    def per_trial_rows(self) -> tuple[list[str], list[list]]:
        """``(header, rows)``: one row per trial (trial, image id, each method's scores, MindEye's retrieval
        rank, caption)."""
        cols = [(k, m) for k, v in self.per_trial.items() for m in v]
        header = ["trial", "image id", *[f"{k} · {m}" for k, m in cols]]
        if self.image_rank is not None:
            header.append(f"MindEye image-retrieval rank (of {self.n_test})")
        header.append("caption")
        rows = []
        for j, t in enumerate(self.trials):
            row = [int(t), int(self.image_ids[j]), *[float(self.per_trial[k][m][j]) for k, m in cols]]
            if self.image_rank is not None:
                row.append(int(self.image_rank[j]))
            rows.append([*row, self.captions[j]])
        return header, rows

    def write_csv(self, folder: Path, name: str = "evaluation", keep: int = 40) -> None:
        """Write the summary and per-trial CSV files into ``folder`` (fresh names; only the newest ``keep``
        files there are kept)."""
        import csv
        import re
        import time
        import uuid
        folder.mkdir(parents=True, exist_ok=True)
        stem = (f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}_{len(self.trials)}trials_"
                f"{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:6]}")
        self.csv, self.per_trial_csv = folder / f"{stem}.csv", folder / f"{stem}_per_trial.csv"
        for path, (header, rows) in ((self.csv, self.summary_rows()), (self.per_trial_csv, self.per_trial_rows())):
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in r] for r in rows)
        old = sorted(folder.glob("*.csv"), key=lambda p: p.stat().st_mtime)[:-keep]
        for p in old:
            p.unlink(missing_ok=True)


_ENGINE: Engine | None = None


def get_engine(bundle_path: Path | str | None = None, data_path: Path | str | None = None) -> Engine:
    """The process-wide engine (created on first call)."""
    global _ENGINE
    if _ENGINE is None:
        from .bundle import DEMO_BUNDLE

        _ENGINE = Engine(Bundle.load(bundle_path or DEMO_BUNDLE, data_path))
    return _ENGINE
