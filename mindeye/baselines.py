"""Baselines scored with exactly MindEye's retrieval code: ridge regression from voxels to the CLIP target,
and (SimNSD only) the linear ceiling: ridge fitted to and tested on the simulator's noise-free responses.
"""
from __future__ import annotations

import numpy as np
import torch

from .data.errors import DataError
from .metrics import retrieval_report
from .models.ridge import fit_ridge


def _rows(ids: np.ndarray, of: np.ndarray) -> np.ndarray:
    pos = {int(i): k for k, i in enumerate(of)}
    missing = [int(i) for i in ids if int(i) not in pos]
    if missing:
        raise DataError(f"{len(missing)} image ids have no target (first {missing[0]})")
    return np.array([pos[int(i)] for i in ids])


def ridge_retrieval(subject, train_targets: torch.Tensor, test_targets: torch.Tensor, train_ids: np.ndarray,
                    train_trials: np.ndarray | None = None, log=None) -> tuple[dict, object]:
    """Fit ridge on repetition-averaged train betas (one row per image; on SimNSD subject 1 this scored
    higher than fitting every single trial, 14.0% vs 12.2% image top-1, and is 3x faster), with alpha chosen
    by cross-validation on the training images only; score 300-way retrieval on the averaged test betas.
    ``train_targets`` is ``[n_train_images, ...]`` aligned with ``train_ids``; ``train_trials`` (default: the
    train split) restricts the fit, e.g. to leave the val split out."""
    x, ids = subject.average_trials(subject.trials("train") if train_trials is None else train_trials)
    y = train_targets[_rows(ids, train_ids)].flatten(1).numpy()
    model = fit_ridge(x, y, log=log)
    test_b, _ = subject.averaged("test")
    rep = retrieval_report(model.predict(test_b), test_targets.flatten(1))
    return {**rep, "alpha": model.alpha}, model


def ridge_noise_free_ceiling(subject, train_targets: torch.Tensor, test_targets: torch.Tensor,
                             train_ids: np.ndarray, test_ids: np.ndarray) -> dict:
    """The linear ceiling on SimNSD: ridge from noise-free responses to the target, tested on noise-free
    responses of the test images. No linear read-out of these voxels can do better with any amount of data
    averaging; a nonlinear decoder (MindEye) can."""
    gt = subject.ground_truth(["noise_free", "noise_free_image_id"])
    if "noise_free" not in gt:
        raise DataError(f"{subject.path}: no stored noise-free responses (SimNSD 2.0 and later writes them); "
                        "the linear ceiling needs the simulator's ground truth")
    of = gt["noise_free_image_id"]
    x_train = np.asarray(gt["noise_free"][np.sort(_rows(train_ids, of))], np.float32)
    order = np.argsort(_rows(train_ids, of))  # rows were read in sorted order; put targets in the same order
    y = train_targets[order].flatten(1).numpy()
    model = fit_ridge(x_train, y)
    x_test = np.asarray(gt["noise_free"][_rows(test_ids, of)], np.float32)
    return {**retrieval_report(model.predict(x_test), test_targets.flatten(1)), "alpha": model.alpha}


def ridge_run(data_path=None, subj: int | None = None, hidden: bool = True, clip_variant: str | None = None,
              norm_embs: bool = True, vd_cache_dir=None, bundle=None, out="train_logs", model_name: str = "ridge",
              log=print) -> dict:
    """``python -m mindeye ridge``: the ridge baseline as a run. Voxels (repetition-averaged per train image) ->
    the same CLIP target a MindEye run of these flags trains on, closed form, alpha chosen by cross-validation on
    the train images only. Scored with MindEye's retrieval code on val and test (300-way top-1, 30 draws);
    writes ``OUT/MODEL_NAME/ridge.pt`` (weights, loadable by ``RidgeModel.from_state_dict``) and
    ``metrics.json``. Returns the metrics."""
    import json
    from pathlib import Path

    from .atomic import atomic_save
    from .bundle import DEMO_BUNDLE, Bundle, cache_root, under_work_root
    from .data.splits import selection_split
    from .metrics import N_WAY
    from .train import clip_targets, file_sha256, load_embedder, resolve_subject, target_tag, target_variant

    b = Bundle.load(bundle or DEMO_BUNDLE)
    subj = b.subject if subj is None else subj
    subject = resolve_subject(data_path, subj, b, log)
    variant = target_variant(clip_variant, subject)
    embedder = load_embedder(variant, b, vd_cache_dir)
    sha = file_sha256(Path(embedder.folder) / "model.safetensors") if variant == "SceneCLIP" else ""
    tag = target_tag(subject.fingerprint(), variant, sha, hidden, norm_embs)
    cache = cache_root() / "clip_targets"
    split = selection_split(subject)
    x, train_ids = subject.average_trials(split.train_trials)
    test_b, test_ids = subject.averaged("test")
    # the same images and cache keys as a training run without image augmentation: each serves the other
    y = clip_targets(embedder, subject.images(train_ids), hidden, norm_embs, cache, f"{tag}_train_aug0", log=log)[:, 0]
    val_t, test_t = (clip_targets(embedder, subject.images(ids), hidden, norm_embs, cache, f"{tag}_{name}",
                                  log=log)[:, 0] for name, ids in (("val", split.val_ids), ("test", test_ids)))
    log(f"ridge: {len(train_ids)} train images x {subject.n_voxels} voxels -> {variant} "
        f"{'hidden' if hidden else 'final'} {tuple(y.shape[1:])}; alpha by 5-fold CV on the train images")
    model = fit_ridge(x, y.numpy(), log=log)
    n_way = lambda n: min(N_WAY, n)  # noqa: E731 - tiny datasets have fewer than 300 images
    metrics = {"model": "ridge", "subject": int(subj), "n_voxels": int(subject.n_voxels), "clip_variant": variant,
               "target": "hidden" if hidden else "final", "target_shape": list(y.shape[1:]), "alpha": model.alpha,
               "cv_mse": {str(a): v for a, v in model.cv.items()}, "val_split": split.source,
               "val": retrieval_report(model.predict(split.val_betas), val_t.flatten(1), n=n_way(len(val_t))),
               "test": retrieval_report(model.predict(test_b), test_t.flatten(1), n=n_way(len(test_t))),
               "n_way": {"val": n_way(len(val_t)), "test": n_way(len(test_t))},
               "data": {"fingerprint": subject.fingerprint(), "dataset": subject.manifest.get("dataset")}}
    folder = under_work_root(Path(out) / model_name)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save(model.state_dict(), folder / "ridge.pt", torch.save)
    atomic_save(metrics, folder / "metrics.json", lambda m, p: Path(p).write_text(json.dumps(m, indent=1)))
    for name in ("val", "test"):
        r, n = metrics[name], metrics["n_way"][name]
        log(f"ridge {name}: {n}-way top-1 image {100 * r['image']['mean']:.1f}% / brain {100 * r['brain']['mean']:.1f}% "
            f"(chance {100 / n:.1f}%)")
    log(f"wrote {folder / 'ridge.pt'} and metrics.json")
    return metrics
