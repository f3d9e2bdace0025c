"""Multi-process training: `accelerate launch --multi_gpu --num_processes 2 ... train --device cpu` runs two CPU
processes over gloo (accelerate 1.15's `--cpu` launches a single process; multi-CPU needs torch.distributed's
launcher, which `--multi_gpu` uses), and two processes with half the batch each follow the same loss curve as
one process with the whole batch (issue 12).

What makes them equal: each step's images are the same (process r takes its slice of the step's batch), the
contrastive loss sees every process's rows (gathered), DDP averages the gradients, and the learning-rate schedule
counts steps the same way. Dropout and MixCo's random mixing draw differently per process, so this test turns
them off (``--drop_in 0 --drop_block 0 --mixup_pct 0``) and uses one repetition per train image."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mindeye.data import canonical
from tests.conftest import free_port
from tests.test_real_data_cli import _toy_vit

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dataset(root, rng, n_vox=40, n_train=64, n_val=16, n_test=16):
    ids = np.arange(n_train + n_val + n_test)
    images = rng.integers(0, 255, (len(ids), 32, 32, 3), dtype=np.uint8)
    canonical.write_images(root, ids, images, [f"image {i}" for i in ids])
    image_id = np.concatenate([ids[:n_train + n_val], np.repeat(ids[n_train + n_val:], 3)])
    split = np.concatenate([np.zeros(n_train), np.ones(n_val), np.full(3 * n_test, 2)]).astype(np.int8)
    rep = np.concatenate([np.zeros(n_train + n_val), np.tile([0, 1, 2], n_test)]).astype(np.int8)
    signal = images.reshape(len(ids), -1)[:, :n_vox].astype(np.float32) / 128 - 1  # betas that carry the image
    betas = signal[image_id] + 0.3 * rng.standard_normal((len(image_id), n_vox)).astype(np.float32)
    canonical.write_subject(root, 1, betas, image_id, rep, np.zeros(len(image_id), np.int16), split)
    canonical.write_manifest(root, "NSD", {1: {"n_voxels": n_vox}})
    return root


def _train(tmp_path, name, batch_size, processes):
    flags = ["train", "--data_path", str(tmp_path / "data"), "--vd_cache_dir", str(tmp_path / "vd"), "--hidden",
             "--no-prior", "--hidden_dim", "32", "--n_blocks", "1", "--proj_hidden", "32", "--batch_size",
             str(batch_size), "--num_epochs", "3", "--mixup_pct", "0", "--no-use_image_aug", "--drop_in", "0",
             "--drop_block", "0", "--log_every", "1", "--seed", "0", "--device", "cpu", "--mixed_precision", "no",
             "--out", str(tmp_path / "runs"), "--model_name", name]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port()), "-m", "mindeye"] if processes > 1 else [sys.executable, "-m", "mindeye"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINDEYE_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([*launch, *flags], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["loss"]) for r in lines if "loss" in r and "val_loss" not in r]
    state = torch.load(tmp_path / "runs" / name / "last.pth", weights_only=True)["model_state_dict"]
    return curve, state


def test_two_processes_follow_the_one_process_loss_curve(tmp_path, rng):
    _dataset(tmp_path / "data", rng)
    _toy_vit(tmp_path / "vd")
    one, w_one = _train(tmp_path, "one", batch_size=16, processes=1)
    two, w_two = _train(tmp_path, "two", batch_size=8, processes=2)
    print("\nstep, loss (1 process, batch 16), loss (2 processes x batch 8)")
    for (s, a), (_, b) in zip(one, two):
        print(s, a, b)
    assert [s for s, _ in one] == [s for s, _ in two] and len(one) == 12  # 64 images / 16 per step x 3 epochs
    # Step 2's loss comes after one update. Equal to float precision, it shows that the update was the full batch's
    # gradient: both processes' halves were gathered into the loss and their gradients averaged by DDP. Rank 0
    # alone (no sync) would have stepped on half the batch's gradient and scored another loss here.
    np.testing.assert_allclose([v for _, v in two[:2]], [v for _, v in one[:2]], rtol=1e-5)
    # Later steps drift by float rounding (a sum of two halves vs one sum), which Adam's first steps amplify where
    # gradients are near zero (their update is about lr * sign(g)): the curves stay within 3%
    np.testing.assert_allclose([v for _, v in two], [v for _, v in one], rtol=3e-2)
    for k in w_one:
        torch.testing.assert_close(w_two[k], w_one[k], rtol=0, atol=2e-2)
