"""SimNSD: a simulated Natural Scenes Dataset, written in the canonical format.

For one subject: procedural scenes (``scenes``) are shown in an NSD-like design (1000 shared test images
seen 3x, train images seen 1-3x, spread over scan sessions); a simulated visual cortex on fsaverage5
(``cortex``) responds through an encoding model (``encoding``); betas get per-voxel noise whose
noise-ceiling SNR follows an NSD-like log-normal distribution, per-session drift (offset and gain that
wander from session to session), and are z-scored per session like NSD's. The true model is kept, so an
oracle (Bayes-optimal identification of test images under the true model and noise) gives the ceiling
every decoder in this project is measured against.

Everything is a deterministic function of ``(seed, subject, config)``.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import canonical, scenes
from .cortex import AREAS, ROIConfig, build_visual_cortex
from .encoding import EncodingModel
from ..metrics import N_WAY
from ..metrics import n_way_scores as n_way_top1

SIMULATOR_VERSION = "2.0"
SUBJECTS = canonical.SIMNSD_SUBJECTS
# Voxel counts are NSD's nsdgeneral counts / 5. ``ncsnr`` is the median over the ROI of the true per-voxel
# noise-ceiling SNR, calibrated to real NSD's nsdgeneral voxels (median ncsnr about 0.3; subject 1 the
# cleanest, 7 the noisiest, as decoding accuracy falls across NSD's subjects). Version 1 calibrated the
# noise to put the Bayes oracle at 90-99% instead, which forced ncsnr down to 0.09 and left learned decoders
# far below anything NSD shows; at NSD's noise the oracle on 3-trial averages saturates (it uses the exact
# true model), so tables also report the single-trial oracle and ridge fitted to noise-free responses.
SUBJECT_PARAMS = {
    1: dict(n_voxels=3145, ncsnr=0.32, seed_offset=101),
    2: dict(n_voxels=2856, ncsnr=0.30, seed_offset=202),
    5: dict(n_voxels=2608, ncsnr=0.29, seed_offset=505),
    7: dict(n_voxels=2536, ncsnr=0.28, seed_offset=707),
}
# Relative ncsnr per area (AREAS order: V1, V2, V3, VO, LO, IPS): as in NSD, early visual cortex is the most
# reliable (V1 ncsnr about 0.56 for subject 1) and ventral / parietal areas the least (about 0.18). The
# per-voxel values are then rescaled so that the ROI's median is the subject's ``ncsnr``.
AREA_NCSNR = (1.9, 1.6, 1.3, 0.6, 0.75, 0.6)
N_VAL = 300  # train-set images held out for model selection (NSD/MindEye V1's val split is 300 images too)
CALIBRATION_IDS = np.arange(10**8, 10**8 + 256)  # fixed scenes that set each voxel's response scale


@dataclass
class SimConfig:
    subj: int = 1
    seed: int = 0
    n_train: int = 6000
    n_test: int = 1000
    image_size: int = 96
    n_sessions: int = 24
    train_reps_p: tuple[float, float, float] = (0.1, 0.1, 0.8)  # P(seen 1x, 2x, 3x): NSD-like ~2.7 reps
    n_val: int = N_VAL  # of the n_train images, held out as the validation split (split 1)
    ncsnr_scale: float = 1.0  # multiplies the subject's median ncsnr (1 = NSD-like default)
    ncsnr_log_sd: float = 0.55
    drift_sd: float = 0.15  # session-to-session random walk of offset and gain
    shared_noise: float = 0.3  # fraction of noise variance in shared, spatially smooth components
    n_noise_components: int = 8
    version: str = field(default=SIMULATOR_VERSION)

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def global_image_ids(cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Shared test images come first (ids 0..n_test-1); each subject has its own block of train ids."""
    slot = SUBJECTS.index(cfg.subj)
    test = np.arange(cfg.n_test)
    train = cfg.n_test + slot * cfg.n_train + np.arange(cfg.n_train)
    return train, test


def _render_chunk(args):
    ids, seed, size = args
    return scenes.make_scenes(ids, seed=seed, size=size)


def render_scenes(image_ids: np.ndarray, seed: int, size: int, workers: int | None = None,
                  desc: str = "rendering scenes"):
    """Parallel ``scenes.make_scenes`` with a progress bar: ``(images, captions, labels)``."""
    workers = workers or min(os.cpu_count() or 1, 8)
    chunks = np.array_split(np.asarray(image_ids), max(1, len(image_ids) // 250))
    jobs = [(c, seed, size) for c in chunks if len(c)]
    results = []
    bar = tqdm(total=len(image_ids), desc=desc, unit="img", leave=False)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for res in pool.map(_render_chunk, jobs):
                results.append(res)
                bar.update(len(res[1]))
    else:
        for job in jobs:
            results.append(_render_chunk(job))
            bar.update(len(job[0]))
    bar.close()
    images = np.concatenate([r[0] for r in results])
    captions = [c for r in results for c in r[1]]
    labels = {k: np.concatenate([r[2][k] for r in results]) for k in results[0][2]}
    return images, captions, labels


@dataclass
class Schedule:
    image_id: np.ndarray  # [T]
    rep: np.ndarray  # [T]
    session: np.ndarray  # [T]
    split: np.ndarray  # [T]


def make_schedule(cfg: SimConfig, rng: np.random.Generator) -> Schedule:
    train, test = global_image_ids(cfg)
    train_reps = rng.choice([1, 2, 3], size=len(train), p=cfg.train_reps_p)
    # the validation images: the last n_val of the subject's block, seen 3x like the test images, so val
    # retrieval is scored exactly as test retrieval is (repetition-averaged betas)
    is_val = np.arange(len(train)) >= len(train) - min(cfg.n_val, len(train) // 5)
    train_reps[is_val] = 3
    ids = np.concatenate([np.repeat(train, train_reps), np.repeat(test, 3)])
    split = np.concatenate([np.repeat(np.where(is_val, 1, 0).astype(np.int8), train_reps),
                            np.full(3 * len(test), 2, np.int8)])
    order = rng.permutation(len(ids))
    ids, split = ids[order], split[order]
    session = (np.arange(len(ids)) * cfg.n_sessions // len(ids)).astype(np.int16)
    rep = np.zeros(len(ids), np.int8)
    seen: dict[int, int] = {}
    for t, i in enumerate(ids.tolist()):
        rep[t] = seen.get(i, 0)
        seen[i] = rep[t] + 1
    return Schedule(ids, rep, session, split)


@dataclass
class SessionModel:
    """Per session and voxel: raw beta = gain * signal + offset + noise; then z-scored with mean, std.

    Noise per trial is ``noise_sd * (sqrt(1 - shared) * eps + sqrt(shared) * loadings @ z)``: independent
    voxel noise plus a few spatially smooth shared components (global signal, physiological noise), which
    is what keeps real fMRI from being trivially decodable despite thousands of voxels.
    """
    gain: np.ndarray  # [S, V]
    offset: np.ndarray  # [S, V]
    mean: np.ndarray  # [S, V]
    std: np.ndarray  # [S, V]
    noise_sd: np.ndarray  # [V]
    loadings: np.ndarray  # [V, K], unit-norm rows
    shared: float


def noise_loadings(calibration_response: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``[V, k]`` shared-noise patterns: a global component plus the top principal axes of the signal.

    Noise correlations in cortex are aligned with signal correlations (voxels that respond alike also
    fluctuate together), so shared noise sits where the stimulus information is and cannot simply be
    projected out; this is what keeps thousands of voxels from making identification trivial.
    """
    centred = calibration_response - calibration_response.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    b = np.concatenate([np.ones((centred.shape[1], 1)), vt[: k - 1].T * np.sqrt(centred.shape[1])], 1)
    b += 0.1 * rng.standard_normal(b.shape)
    return (b / np.linalg.norm(b, axis=1, keepdims=True)).astype(np.float32)


def simulate_betas(signal: np.ndarray, sched: Schedule, noise_sd: np.ndarray, loadings: np.ndarray,
                   cfg: SimConfig, rng: np.random.Generator) -> tuple[np.ndarray, SessionModel]:
    """``signal [T, V]`` noise-free responses per trial -> session-z-scored betas ``[T, V]``."""
    s, v = cfg.n_sessions, signal.shape[1]
    gain = 1 + np.cumsum(rng.normal(0, cfg.drift_sd, (s, v)), axis=0) * 0.5
    gain = np.clip(gain, 0.5, 1.5)
    offset = np.cumsum(rng.normal(0, cfg.drift_sd, (s, v)), axis=0) * noise_sd
    betas = np.empty_like(signal)
    mean, std = np.empty((s, v), np.float32), np.empty((s, v), np.float32)
    a, b = np.sqrt(1 - cfg.shared_noise), np.sqrt(cfg.shared_noise)
    for k in range(s):
        rows = sched.session == k
        n = int(rows.sum())
        noise = a * rng.standard_normal((n, v), np.float32)
        noise += b * rng.standard_normal((n, loadings.shape[1]), np.float32) @ loadings.T
        raw = gain[k] * signal[rows] + offset[k] + noise_sd * noise
        mean[k], std[k] = raw.mean(0), raw.std(0) + 1e-6
        betas[rows] = (raw - mean[k]) / std[k]
    return betas, SessionModel(gain.astype(np.float32), offset.astype(np.float32), mean, std,
                               noise_sd.astype(np.float32), loadings, cfg.shared_noise)


# ------------------------------------------------------------------------------------------- the oracle

def oracle_loglik(betas: np.ndarray, sessions: list[np.ndarray], candidates: np.ndarray,
                  sm: SessionModel, chunk: int = 64) -> np.ndarray:
    """Gaussian log-likelihood ``[J, I]`` of observed test samples under each candidate's true response.

    ``betas [J, V]`` are averages of trials from sessions ``sessions[j]``; ``candidates [I, V]`` are
    noise-free responses. Under the true model sample j given image i is Gaussian with mean
    ``alpha_j * f_i + c_j`` and covariance ``D_j + M_j M_j^T`` (independent + shared noise, each trial
    scaled by its session's z-scoring); the Woodbury identity makes the exact log-likelihood cheap.
    """
    f = candidates.astype(np.float32)
    f2 = f**2
    out = np.empty((len(betas), len(f)), np.float64)
    ind, sh = 1 - sm.shared, sm.shared
    for j0 in range(0, len(betas), chunk):
        js = list(range(j0, min(j0 + chunk, len(betas))))
        alphas, cs, ds, ms = [], [], [], []
        for j in js:
            ss = np.asarray(sessions[j])
            n = len(ss)
            w = 1 / sm.std[ss]  # [n, V]
            alphas.append((sm.gain[ss] * w).mean(0))
            cs.append(((sm.offset[ss] - sm.mean[ss]) * w).mean(0))
            ws = w * sm.noise_sd
            ds.append(ind * (ws**2).sum(0) / n**2)
            ms.append(np.sqrt(sh) / n * (ws[:, :, None] * sm.loadings[None]).transpose(1, 0, 2).reshape(len(w[0]), -1))
        alpha, c, d = np.stack(alphas), np.stack(cs), np.stack(ds)  # [J, V]
        m = np.stack(ms)  # [J, V, R]
        r = betas[js] - c
        # x_ji = r_j - alpha_j f_i ; Q_ji = x D^-1 x - y^T C^-1 y, y = M^T D^-1 x, C = I + M^T D^-1 M
        q = (r**2 / d).sum(1)[:, None] - 2 * (r * alpha / d) @ f.T + (alpha**2 / d) @ f2.T  # [J, I]
        md = m / d[:, :, None]  # [J, V, R]
        cmat = np.eye(m.shape[2]) + np.einsum("jvr,jvs->jrs", m, md, optimize=True)
        jn, v, rk = md.shape
        y = np.einsum("jvr,jv->jr", md, r)[:, None, :] - (
            f @ (alpha[:, :, None] * md).transpose(1, 0, 2).reshape(v, jn * rk)).reshape(len(f), jn, rk).transpose(1, 0, 2)
        chol = np.linalg.cholesky(cmat.astype(np.float64))  # [J, R, R]
        z = np.linalg.solve(chol, y.transpose(0, 2, 1).astype(np.float64))  # [J, R, I]
        out[js] = -0.5 * (q - (z**2).sum(1))
    return out


def _log_posterior(ll: np.ndarray) -> np.ndarray:
    """``log p(image i | brain j)`` under a uniform prior over the candidates, from ``ll[j, i]``."""
    m = ll.max(1, keepdims=True)
    return ll - (m + np.log(np.exp(ll - m).sum(1, keepdims=True)))


def noise_ceiling(reps: np.ndarray) -> dict[str, float]:
    """NSD's noise ceiling from z-scored betas ``[images, reps, V]``: ncsnr and NC% for 1 and 3 trials."""
    noise_var = reps.var(axis=1, ddof=1).mean(0)
    ncsnr = np.sqrt(np.clip(1 - noise_var, 0, None)) / np.sqrt(noise_var)
    nc = lambda n: 100 * ncsnr**2 / (ncsnr**2 + 1 / n)  # noqa: E731
    return {"median_ncsnr": float(np.median(ncsnr)), "median_nc_1trial": float(np.median(nc(1))),
            "median_nc_3trials": float(np.median(nc(3))), "ncsnr": ncsnr}


# ------------------------------------------------------------------------------------------- simulate

@dataclass
class SimSubject:
    """A simulated subject's true model: rebuild any image's noise-free response from it."""
    cfg: SimConfig
    encoder: EncodingModel
    calibration_response: np.ndarray  # [256, V] responses to CALIBRATION_IDS

    @classmethod
    def create(cls, cfg: SimConfig, workers: int | None = None) -> "SimSubject":
        params = SUBJECT_PARAMS[check_sim_subject(cfg.subj)]
        rng = np.random.default_rng([cfg.seed, params["seed_offset"], 1])
        cortex = build_visual_cortex(ROIConfig(n_voxels=params["n_voxels"]), rng)
        enc = EncodingModel.create(cortex, rng)
        images, _, labels = render_scenes(CALIBRATION_IDS, cfg.seed, cfg.image_size, workers, "calibration scenes")
        enc.calibrate(images, labels)
        return cls(cfg, enc, enc.response(images, labels))

    def noise_free(self, images: np.ndarray, labels: dict[str, np.ndarray], batch: int = 500) -> np.ndarray:
        """``[N, V]`` noise-free responses (units of signal SD) of rendered scenes and their labels."""
        out = [self.encoder.response(images[i:i + batch], {k: v[i:i + batch] for k, v in labels.items()})
               for i in range(0, len(images), batch)]
        return np.concatenate(out)


def respond(subject: SimSubject, gt: dict, images: np.ndarray, labels: dict[str, np.ndarray], noise: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A simulated subject's betas ``[N, V]`` for new scenes, as if shown in one of its sessions (drawn from
    ``rng``), with ``noise`` times one trial's measurement noise (0 = noise-free; 1/sqrt(3) = the noise of an
    average of 3 repetitions; 1 = a single trial). Scaled and z-scored exactly like the dataset's betas, with
    the session gains, offsets and z-scoring stored in its ground truth ``gt``. Returns ``(betas, noise_free)``,
    the second in units of signal SD."""
    if not 0.0 <= float(noise) <= 1.0:
        raise ValueError(f"noise should be between 0 (noise-free) and 1 (a single trial), got {noise}")
    signal = subject.noise_free(images, labels)
    n, v = signal.shape
    k = int(rng.integers(gt["session_gain"].shape[0]))
    shared = subject.cfg.shared_noise
    eps = np.sqrt(1 - shared) * rng.standard_normal((n, v)) + \
        np.sqrt(shared) * rng.standard_normal((n, gt["noise_loadings"].shape[1])) @ gt["noise_loadings"].T
    raw = gt["session_gain"][k] * signal + gt["session_offset"][k] + float(noise) * gt["noise_sd"] * eps
    return ((raw - gt["session_mean"][k]) / gt["session_std"][k]).astype(np.float32), signal.astype(np.float32)


def expected_fingerprint(cfg: SimConfig) -> str:
    """The ``SubjectData.fingerprint()`` this simulator version gives ``cfg``, without simulating any betas
    (cortex layout + trial schedule + a few rendered test images; a few seconds)."""
    params = SUBJECT_PARAMS[check_sim_subject(cfg.subj)]
    rng = np.random.default_rng([cfg.seed, params["seed_offset"], 1])
    cortex = build_visual_cortex(ROIConfig(n_voxels=params["n_voxels"]), rng)
    sched = make_schedule(cfg, np.random.default_rng([cfg.seed, params["seed_offset"], 2]))
    test = np.unique(sched.image_id[sched.split == 2])[:8]
    images = np.stack([scenes.render(scenes.sample_scene(cfg.seed, int(i)), cfg.image_size, cfg.seed) for i in test])
    return canonical.data_fingerprint(sched.image_id, cortex.hemi, cortex.vertex, images)


def voxel_ncsnr(median: float, area: np.ndarray, log_sd: float, rng: np.random.Generator) -> np.ndarray:
    """True per-voxel ncsnr ``[V]``: log-normal around an area-dependent level (``AREA_NCSNR``), scaled so
    that the median over the ROI is exactly ``median``."""
    raw = np.asarray(AREA_NCSNR)[area] * np.exp(rng.normal(0, log_sd, len(area)))
    return raw * (median / np.median(raw))


def check_sim_subject(subj: int) -> int:
    if int(subj) not in SUBJECTS:
        raise ValueError(f"SimNSD simulates subjects {list(SUBJECTS)} (as the seed supports); got {subj!r}")
    return int(subj)


def simulate(out: Path, cfg: SimConfig, workers: int | None = None, force: bool = False,
             log=print) -> dict:
    """Write one simulated subject (and the images it needs) to ``out``; returns its summary figures.

    Cached: if ``out/subjXX.hdf5`` was written with the same config, nothing is recomputed.
    """
    out = Path(out)
    check_sim_subject(cfg.subj)
    out.mkdir(parents=True, exist_ok=True)
    path = canonical.subject_file(out, cfg.subj)
    if path.exists() and not force:
        try:
            data = canonical.load_subject(out, cfg.subj)
            if data.attrs.get("sim_config") == cfg.key():
                summary = json.loads(data.attrs["summary"])
                data.close()
                log(f"SimNSD subject {cfg.subj}: cached in {path}")
                return summary
            data.close()
        except canonical.DataError:
            pass  # unreadable or stale: simulate again
    params = SUBJECT_PARAMS[cfg.subj]
    log(f"SimNSD subject {cfg.subj}: {params['n_voxels']} voxels, {cfg.n_train} train + {cfg.n_test} test images")
    subject = SimSubject.create(cfg, workers)
    rng = np.random.default_rng([cfg.seed, params["seed_offset"], 2])
    sched = make_schedule(cfg, rng)
    train_ids, test_ids = global_image_ids(cfg)
    all_ids = np.concatenate([test_ids, train_ids])
    images, captions, labels = render_scenes(all_ids, cfg.seed, cfg.image_size, workers)
    canonical.write_images(out, all_ids, images, captions, labels)
    response = subject.noise_free(images, labels)  # [N_images, V], rows follow all_ids
    row_of = {int(i): k for k, i in enumerate(all_ids)}
    trial_rows = np.array([row_of[i] for i in sched.image_id.tolist()])
    v = params["n_voxels"]
    c = subject.encoder.cortex
    ncsnr_true = voxel_ncsnr(params["ncsnr"] * cfg.ncsnr_scale, c.area, cfg.ncsnr_log_sd, rng)
    noise_sd = (1 / ncsnr_true).astype(np.float32)
    loadings = noise_loadings(subject.calibration_response, cfg.n_noise_components, rng)
    betas, sm = simulate_betas(response[trial_rows], sched, noise_sd, loadings, cfg, rng)

    # oracle and noise ceiling on the shared test images
    test_trials = np.flatnonzero(sched.split == 2)
    by_image = {}
    for t in test_trials:
        by_image.setdefault(int(sched.image_id[t]), []).append(t)
    order = sorted(by_image)
    trials = [np.array(by_image[i]) for i in order]
    f_test = response[[row_of[i] for i in order]]
    avg = np.stack([betas[t].mean(0) for t in trials])
    single = np.stack([betas[t[0]] for t in trials])
    ll_avg = oracle_loglik(avg, [sched.session[t] for t in trials], f_test, sm)
    ll_single = oracle_loglik(single, [sched.session[t[:1]] for t in trials], f_test, sm)
    nc = noise_ceiling(np.stack([betas[t] for t in trials]))
    summary = {
        "subject": cfg.subj, "n_voxels": v, "n_trials": int(len(sched.image_id)),
        "n_train_images": cfg.n_train, "n_test_images": cfg.n_test,
        "oracle_top1_averaged": n_way_top1(ll_avg), "oracle_top1_single_trial": n_way_top1(ll_single),
        # brain retrieval (which of n brains saw this image?): rank brains by their posterior for the image
        "oracle_brain_top1_averaged": n_way_top1(_log_posterior(ll_avg).T),
        "n_way": min(N_WAY, cfg.n_test), "median_ncsnr": nc["median_ncsnr"],
        "median_noise_ceiling_1trial": nc["median_nc_1trial"],
        "median_noise_ceiling_3trials": nc["median_nc_3trials"],
        "median_ncsnr_by_area": {a: float(np.median(nc["ncsnr"][c.area == k])) for k, a in enumerate(AREAS)
                                 if (c.area == k).any()},
        "n_val_images": int(len(np.unique(sched.image_id[sched.split == 1]))),
    }
    gt = {"prf_x": c.prf_x, "prf_y": c.prf_y, "prf_size": c.prf_size, "eccentricity": c.eccentricity,
          "polar_angle": c.polar_angle, "area": c.area, "ncsnr_true": ncsnr_true.astype(np.float32),
          "ncsnr_measured": nc["ncsnr"].astype(np.float32), "noise_sd": noise_sd,
          "noise_loadings": loadings, "session_gain": sm.gain, "session_offset": sm.offset, "session_mean": sm.mean, "session_std": sm.std,
          "test_image_id": np.array(order, np.int64), "test_noise_free": f_test.astype(np.float32),
          # every image's noise-free response (rows follow noise_free_image_id): the linear-ceiling baseline
          # (ridge fitted to noise-free responses) and teaching views read it
          "noise_free_image_id": all_ids.astype(np.int64), "noise_free": response.astype(np.float16)}
    canonical.write_subject(out, cfg.subj, betas.astype(np.float16), sched.image_id, sched.rep, sched.session,
                            sched.split, c.hemi, c.vertex, gt,
                            attrs={"dataset": "SimNSD", "sim_config": cfg.key(), "summary": json.dumps(summary),
                                   "simulator_version": SIMULATOR_VERSION, "areas": json.dumps(AREAS)})
    canonical.write_manifest(out, "SimNSD", {cfg.subj: {"n_voxels": v, "seed": cfg.seed,
                                                        "simulator_version": SIMULATOR_VERSION}},
                             image_size=cfg.image_size, surface="fsaverage5")
    return summary


def format_summary(s: dict) -> str:
    return (f"SimNSD subject {s['subject']}: {s['n_voxels']} voxels, {s['n_trials']} trials\n"
            f"  oracle {s['n_way']}-way top-1 (Bayes-optimal, true model): "
            f"averaged over 3 reps {100 * s['oracle_top1_averaged']:.1f}%, "
            f"single trial {100 * s['oracle_top1_single_trial']:.1f}%  (chance {100 / s['n_way']:.2f}%)\n"
            f"  median noise ceiling: ncsnr {s['median_ncsnr']:.3f}, "
            f"NC {s['median_noise_ceiling_1trial']:.1f}% (1 trial), {s['median_noise_ceiling_3trials']:.1f}% (3 trials)"
            + ("\n  median ncsnr by area: " + ", ".join(f"{a} {v:.2f}" for a, v in s["median_ncsnr_by_area"].items())
               if "median_ncsnr_by_area" in s else ""))
