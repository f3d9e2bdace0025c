"""Honest model selection: a val split carved from training images picks best.pth; the test set is scored
and logged beside it but never chooses anything. Plus the training levers chosen on that val split."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mindeye.data import canonical
from mindeye.data.errors import DataError
from mindeye.data.splits import selection_split

from .test_train import TINY_MODEL, metrics, run  # noqa: F401  (fixtures below come from there too)
from .test_train import cache_in_tmp, tiny_bundle  # noqa: F401


def test_simnsd_val_split_is_used_as_is(tiny_sim):
    d = canonical.load_subject(tiny_sim[0], 1)
    sp = selection_split(d)
    assert "dataset's val split" in sp.source
    assert np.array_equal(sp.val_ids, np.unique(d.image_id[d.trials("val")]))
    assert not np.isin(d.image_id[sp.train_trials], sp.val_ids).any()
    assert not np.isin(sp.val_ids, np.unique(d.image_id[d.trials("test")])).any()


def test_without_a_val_split_one_is_carved_from_training_images_only(tiny_sim, monkeypatch):
    d = canonical.load_subject(tiny_sim[0], 1)
    d.split = np.where(d.split == 1, 0, d.split)  # a dataset that stores no val split
    sp = selection_split(d, n_val=10)
    train_ids = np.unique(d.image_id[d.trials("train")])
    test_ids = np.unique(d.image_id[d.trials("test")])
    assert len(sp.val_ids) == 10 and np.isin(sp.val_ids, train_ids).all() and not np.isin(sp.val_ids, test_ids).any()
    assert not np.isin(d.image_id[sp.train_trials], sp.val_ids).any()
    assert "carved" in sp.source and np.array_equal(selection_split(d, n_val=10).val_ids, sp.val_ids)
    avg, ids = d.average_trials(np.flatnonzero(np.isin(d.image_id, sp.val_ids) & (d.split == 0)))
    assert np.allclose(avg, sp.val_betas) and np.array_equal(ids, sp.val_ids)


def test_best_checkpoint_is_chosen_on_val_and_never_on_test(tiny_bundle, tmp_path, monkeypatch):
    """Two identical runs, one with the test set's betas replaced by noise: same val curve, same best.pth epoch,
    different test curve. If the test set steered the choice, the best epochs could differ."""
    args = ["--num_epochs", "4", "--no-hidden", "--no-prior", "--ckpt_interval", "1"]
    assert run(["--model_name", "a", *args], tiny_bundle, tmp_path) == 0
    real = canonical.SubjectData.averaged

    def noisy_test(self, split="test"):
        b, ids = real(self, split)
        return (np.random.default_rng(1).standard_normal(b.shape).astype(np.float32) if split == "test" else b), ids
    monkeypatch.setattr(canonical.SubjectData, "averaged", noisy_test)
    assert run(["--model_name", "b", *args], tiny_bundle, tmp_path) == 0
    ea = [r for r in metrics(tmp_path / "a" / "metrics.jsonl") if "val_fwd_top1" in r]
    eb = [r for r in metrics(tmp_path / "b" / "metrics.jsonl") if "val_fwd_top1" in r]
    assert [r["val_fwd_top1"] for r in ea] == [r["val_fwd_top1"] for r in eb]
    assert [r["test_fwd_top1"] for r in ea] != [r["test_fwd_top1"] for r in eb]
    best_a = torch.load(tmp_path / "a" / "best.pth", weights_only=False)["epoch"]
    best_b = torch.load(tmp_path / "b" / "best.pth", weights_only=False)["epoch"]
    assert best_a == best_b
    score = [(r["val_fwd_top1"] + r["val_bwd_top1"]) / 2 for r in ea]
    assert best_a == int(np.argmax(score)) + 1  # the checkpoint's epoch counter is one past the epoch index
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert "val split" in cfg["data"]["val_split"]


def test_prior_loss_skips_mixed_rows():
    from mindeye.models.prior import DiffusionPrior, PriorConfig
    from mindeye.models.voxel2clip import BrainNetwork, Voxel2ClipConfig
    torch.manual_seed(0)
    v2c = BrainNetwork(Voxel2ClipConfig(n_voxels=20, hidden=16, n_blocks=1, clip_tokens=3, clip_dim=8, proj_hidden=8))
    p = DiffusionPrior(PriorConfig(dim=8, depth=1, heads=2, dim_head=4, num_tokens=3, rotary_dim=4), voxel2clip=v2c)
    vox, tgt = torch.randn(6, 20), torch.randn(6, 3, 8)
    keep = torch.tensor([True, False, True, False, False, True])
    _, _, loss = p(vox, tgt, keep)
    loss.backward()
    assert p.voxel2clip.lin0[0].weight.grad is not None
    # rows left out contribute nothing: changing their targets leaves the loss unchanged (same RNG draws)
    tgt2 = tgt.clone()
    tgt2[~keep] = 100.0
    torch.manual_seed(1)
    a = p(vox, tgt, keep)[2]
    torch.manual_seed(1)
    b = p(vox, tgt2, keep)[2]
    assert torch.equal(a, b)
    assert p(vox, tgt, torch.zeros(6, dtype=torch.bool))[2].item() == 0.0


def test_train_levers_and_trunk_initialisation(tiny_bundle, tmp_path):
    assert run(["--model_name", "h", "--num_epochs", "1", "--no-prior"], tiny_bundle, tmp_path) == 0
    args = ["--model_name", "f", "--num_epochs", "1", "--no-hidden", "--no-prior", "--train_reps", "subset",
            "--voxel_noise", "0.3", "--weight_decay", "0.05", "--drop_in", "0.3", "--init_backbone", str(tmp_path / "h")]
    assert run(args, tiny_bundle, tmp_path) == 0
    cfg = json.loads((tmp_path / "f" / "config.json").read_text())
    assert cfg["train_reps"] == "subset" and cfg["voxel_noise"] == 0.3 and cfg["data"]["init_backbone"]["epoch"] == 1
    # a trunk of another size is refused with what was expected
    from mindeye.cli import main
    bad = ["train", "--bundle", str(tiny_bundle), "--out", str(tmp_path), "--no-use_image_aug", *TINY_MODEL,
           "--model_name", "g", "--num_epochs", "1", "--no-hidden", "--no-prior", "--hidden_dim", "24",
           "--init_backbone", str(tmp_path / "h")]
    assert main(bad) == 2
    with pytest.raises(SystemExit):
        main(["train", "--train_reps", "all"])
    with pytest.raises(DataError):
        from mindeye.train import TrainConfig, train
        train(TrainConfig(bundle=str(tiny_bundle), out=str(tmp_path), train_reps="all"))


def test_fine_tuning_a_hidden_run_loads_its_brain_network_and_prior(tiny_bundle, tmp_path):
    """--init_scope model starts from a finished run's whole model (BrainNetwork + prior); --freeze_backbone keeps
    the BrainNetwork fixed; a prior of another size is refused with what differs."""
    from mindeye.train import load_checkpoint
    assert run(["--model_name", "src", "--num_epochs", "1"], tiny_bundle, tmp_path) == 0
    src = load_checkpoint(tmp_path / "src" / "last.pth")["model_state_dict"]
    # a learning rate of ~0 makes the fine-tuned weights show what was loaded
    assert run(["--model_name", "ft", "--num_epochs", "1", "--max_steps", "1", "--max_lr", "1e-12",
                "--init_backbone", str(tmp_path / "src" / "last.pth"), "--init_scope", "model"], tiny_bundle, tmp_path) == 0
    ft = load_checkpoint(tmp_path / "ft" / "last.pth")
    assert ft["data"]["init_backbone"]["loaded"] == "whole BrainNetwork and diffusion prior"
    for k in ("net.learned_query", "voxel2clip.lin0.0.weight", "voxel2clip.lin1.weight", "voxel2clip.projector.8.weight"):
        assert torch.allclose(ft["model_state_dict"][k], src[k], atol=1e-6), k
    # trunk scope: the prior starts fresh
    assert run(["--model_name", "tr", "--num_epochs", "1", "--max_steps", "1", "--max_lr", "1e-12",
                "--init_backbone", str(tmp_path / "src" / "last.pth")], tiny_bundle, tmp_path) == 0
    tr = load_checkpoint(tmp_path / "tr" / "last.pth")["model_state_dict"]
    assert not torch.allclose(tr["net.learned_query"], src["net.learned_query"])
    # frozen: the BrainNetwork does not move even at a real learning rate
    assert run(["--model_name", "fz", "--num_epochs", "1", "--max_steps", "3", "--no-v2c", "--freeze_backbone",
                "--init_backbone", str(tmp_path / "src" / "last.pth")], tiny_bundle, tmp_path) == 0
    fz = load_checkpoint(tmp_path / "fz" / "last.pth")["model_state_dict"]
    assert all(torch.equal(fz[k], src[k]) for k in src if k.startswith("voxel2clip."))
    assert run(["--model_name", "bad", "--num_epochs", "1", "--prior_depth", "2", "--init_backbone",
                str(tmp_path / "src" / "last.pth"), "--init_scope", "model"], tiny_bundle, tmp_path) == 2


def test_trunk_projector_scope_carries_the_hidden_runs_projector_into_a_final_run(tiny_bundle, tmp_path):
    """--init_scope trunk_projector: a final-target run starts from a hidden run's trunk and its per-token
    projector; its output layer (1 token, not 65) starts fresh."""
    from mindeye.train import load_checkpoint
    assert run(["--model_name", "hid", "--num_epochs", "1", "--no-prior"], tiny_bundle, tmp_path) == 0
    src = load_checkpoint(tmp_path / "hid" / "last.pth")["model_state_dict"]
    assert run(["--model_name", "fin", "--num_epochs", "1", "--max_steps", "1", "--max_lr", "1e-12", "--no-hidden",
                "--no-prior", "--init_backbone", str(tmp_path / "hid"), "--init_scope", "trunk_projector"],
               tiny_bundle, tmp_path) == 0
    ck = load_checkpoint(tmp_path / "fin" / "last.pth")
    fin = ck["model_state_dict"]
    assert ck["data"]["init_backbone"]["loaded"] == "trunk and projector"
    for k in ("lin0.0.weight", "mlp.0.0.weight", "projector.2.weight", "projector.8.bias"):
        assert torch.allclose(fin[k], src[k], atol=1e-6), k
    assert fin["lin1.weight"].shape[0] < src["lin1.weight"].shape[0]  # one token's output layer, its own
    # the trunk scope leaves the projector fresh
    assert run(["--model_name", "fin2", "--num_epochs", "1", "--max_steps", "1", "--max_lr", "1e-12", "--no-hidden",
                "--no-prior", "--init_backbone", str(tmp_path / "hid")], tiny_bundle, tmp_path) == 0
    fin2 = load_checkpoint(tmp_path / "fin2" / "last.pth")["model_state_dict"]
    assert torch.allclose(fin2["lin0.0.weight"], src["lin0.0.weight"], atol=1e-6)
    assert not torch.allclose(fin2["projector.2.weight"], src["projector.2.weight"])


def test_a_config_built_in_python_is_checked_against_its_flags_choices(tiny_bundle, tmp_path):
    from mindeye.train import TrainConfig, train
    with pytest.raises(DataError, match="--init_scope should be one of 'trunk', 'trunk_projector', 'model', "
                                        "found 'all'"):
        train(TrainConfig(bundle=str(tiny_bundle), out=str(tmp_path), init_scope="all"))


def test_train_never_simulates_into_a_user_named_folder(tiny_bundle, tmp_path, capsys):
    """--data_path that is not a converted dataset is an error naming how to make one; nothing is created."""
    from mindeye.cli import main
    missing = tmp_path / "nowhere" / "nsd"
    args = ["train", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "runs"), "--no-use_image_aug", *TINY_MODEL,
            "--model_name", "x", "--num_epochs", "1", "--no-prior", "--data_path", str(missing)]
    assert main(args) == 2
    assert not missing.exists() and not (tmp_path / "nowhere").exists()
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "train_subj01_0.tar").write_bytes(b"")
    assert main([*args[:-1], str(tmp_path / "v1")]) == 2
    err = capsys.readouterr().err
    assert "convert" in err
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["train_subj01_0.tar"]


def test_prior_brain_positions_add_no_weights_and_let_the_prior_see_token_order():
    """--prior_brain_pos: the prior's positional embedding is added to the brain tokens too. Same checkpoint keys
    (V1 checkpoints still load); with it, permuting the brain tokens changes the prediction more than without."""
    import torch

    from mindeye.models.prior import PriorConfig, PriorNetwork
    torch.manual_seed(0)
    cfg = dict(dim=16, depth=1, heads=2, dim_head=8, num_tokens=5, rotary_dim=8)
    plain, pos = PriorNetwork(PriorConfig(**cfg)), PriorNetwork(PriorConfig(**cfg, brain_pos_emb=True))
    assert list(plain.state_dict()) == list(pos.state_dict())
    pos.load_state_dict(plain.state_dict())
    x, brain, t = torch.randn(3, 5, 16), torch.randn(3, 5, 16), torch.tensor([1, 5, 9])
    with torch.no_grad():
        assert not torch.allclose(plain(x, t, brain), pos(x, t, brain))


def test_align_mult_pulls_the_backbone_tokens_onto_the_targets(tiny_bundle, tmp_path):
    """--align_mult adds the per-token squared distance between backbone and target tokens to the loss: after
    a few epochs the backbone sits much closer to the val targets than without it."""
    import torch

    from mindeye.train import Run, TrainConfig
    dist = {}
    for a in (0.0, 10.0):
        r = Run(TrainConfig(bundle=str(tiny_bundle), out=str(tmp_path), model_name=f"a{a}", num_epochs=8, max_lr=3e-3,
                            hidden=True, prior=False, use_image_aug=False, hidden_dim=32, n_blocks=1, proj_hidden=16,
                            batch_size=16, align_mult=a, ckpt_saving=False, mixup_pct=0.0), log=lambda *x: None)
        r.fit()
        with torch.no_grad():
            bb = r.v2c.eval()(r.val_betas)[0]
        dist[a] = float((bb - r.val_targets).pow(2).sum(-1).mean())
    assert dist[10.0] < 0.5 * dist[0.0]


def test_a_finished_run_is_recognised_with_its_subject_resolved_and_not_with_other_settings(tiny_bundle, tmp_path):
    """build-demo and the benches reuse a finished run only when it trained with the same settings; a subject
    left to default (None) matches the subject it resolved to, any other difference does not."""
    from mindeye.build_demo import finished_run
    args = ["--model_name", "done", "--num_epochs", "1", "--no-hidden", "--no-prior", "--hidden_dim", "32",
            "--n_blocks", "1", "--proj_hidden", "16", "--batch_size", "16"]
    assert run(args, tiny_bundle, tmp_path) == 0
    kw = dict(model_name="done", num_epochs=1, hidden=False, prior=False, hidden_dim=32, n_blocks=1, proj_hidden=16,
              batch_size=16, prior_depth=1, prior_heads=2, prior_dim_head=8, log_every=1, use_image_aug=False,
              out=str(tmp_path), bundle=str(tiny_bundle))
    assert finished_run(tmp_path / "done", kw)  # subj None here, 1 in the run
    assert not finished_run(tmp_path / "done", {**kw, "synthetic_frac": 3.0})
    assert not finished_run(tmp_path / "done", {**kw, "num_epochs": 2})
