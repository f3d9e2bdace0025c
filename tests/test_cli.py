import subprocess
import sys

from mindeye.cli import main


def test_simulate_rejects_unsupported_subject(capsys):
    try:
        main(["simulate", "--subj", "3", "--out", "x"])
    except SystemExit as e:
        assert e.code == 2
    assert "invalid choice: 3" in capsys.readouterr().err


def test_convert_reports_data_errors(tmp_path, capsys):
    assert main(["convert", "--layout", "v1", "--data_path", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "mindeye", "simulate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--n_train" in out.stdout and "--seed" in out.stdout


def test_simulate_prints_oracle_and_noise_ceiling(tmp_path, capsys):
    assert main(["simulate", "--subj", "1", "--out", str(tmp_path), "--n_train", "60", "--n_test", "40",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "oracle 40-way top-1" in out and "single trial" in out and "median noise ceiling" in out


def _subparser(command):
    import argparse

    from mindeye.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


# the seed scripts' flag names (Train_MindEye.py, train_autoencoder.py), then ours: pinned, as scripts call them
TRAIN_FLAGS = """model_name data_path subj batch_size hidden clip_variant wandb_log resume_from_ckpt wandb_project
    mixup_pct norm_embs use_image_aug num_epochs prior v2c plot_umap lr_scheduler_type ckpt_saving ckpt_interval
    save_at_end seed max_lr n_samples_save use_projector vd_cache_dir bundle out device mixed_precision hidden_dim
    n_blocks proj_hidden prior_depth prior_heads prior_dim_head prior_mult prior_brain_pos align_mult ckpt_every_s
    log_every max_steps weight_decay drop_in drop_block voxel_noise train_reps init_backbone freeze_backbone
    synthetic_trials synthetic_frac synthetic_images synthetic_features init_scope""".split()
LOWLEVEL_FLAGS = """model_name data_path subj batch_size num_epochs max_lr lr_scheduler_type ckpt_saving
    ckpt_interval save_at_end resume_from_ckpt seed use_cont cont_model use_reconst use_sobel_loss
    use_blurred_training ups_mode wandb_log wandb_project vae_path bundle out device mixed_precision hidden_dim
    n_blocks map_channels upsampler_channels ckpt_every_s log_every max_steps synthetic_trials synthetic_frac
    synthetic_images synthetic_features""".split()


def test_train_flags_are_the_config_fields_with_their_defaults_and_help():
    """Each flag of train / train-lowlevel is written once, as a TrainConfig / LowLevelTrainConfig field: the
    parser's flags are exactly the fields (plus train's --preset), each with the field's default, help and
    choices; the fields that are no flags keep their defaults in the parsed namespace."""
    import argparse
    import dataclasses

    from mindeye.cli import build_parser
    from mindeye.flags import flag_fields
    from mindeye.train_config import LowLevelTrainConfig, TrainConfig

    for command, cls, extras, names in [("train", TrainConfig, {"preset"}, TRAIN_FLAGS),
                                        ("train-lowlevel", LowLevelTrainConfig, set(), LOWLEVEL_FLAGS)]:
        actions = {a.dest: a for a in _subparser(command)._actions if a.dest != "help"}
        fields = flag_fields(cls)
        assert sorted(f.name for f in fields) == sorted(names)  # the seed's names, none lost or added
        assert set(actions) == {f.name for f in fields} | extras  # no flag defined outside the dataclass
        parsed = vars(build_parser().parse_args([command]))
        assert {f.name: parsed[f.name] for f in dataclasses.fields(cls)} == dataclasses.asdict(cls())
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
        for f in fields:
            a = actions[f.name]
            assert a.option_strings[0] == f"--{f.name}"
            assert a.help == f.metadata["help"] and a.choices == f.metadata.get("choices")
            assert (type(a) is argparse.BooleanOptionalAction) == isinstance(f.default, bool)
            if f.default is not None and not isinstance(f.default, (bool, tuple)):
                assert a.type is type(f.default)
        for f in dataclasses.fields(cls):  # the rest are no flags of this command (e.g. train-lowlevel --hidden)
            if f.name not in {g.name for g in fields}:
                assert f.name not in actions
    # train-lowlevel's inherited TrainConfig fields that it does not re-declare keep TrainConfig's defaults
    assert LowLevelTrainConfig().weight_decay == TrainConfig().weight_decay and LowLevelTrainConfig().hidden is True


def test_dataclass_flags_from_field_types_and_metadata():
    """add_dataclass_flags on a toy config: bool, X | None, tuple[X, ...], choices, cli=False, a subclass's own
    fields only, and unknown metadata refused."""
    import argparse
    from dataclasses import dataclass, field

    import pytest

    from mindeye.flags import add_dataclass_flags

    @dataclass
    class Toy:
        on: bool = field(default=True, metadata={"help": "on?"})
        n: int | None = field(default=None, metadata={"help": "n", "choices": [1, 2]})
        sizes: tuple[int, ...] = field(default=(1, 2), metadata={"help": "sizes"})
        hidden_knob: float = field(default=0.5, metadata={"help": "not a flag", "cli": False})

    @dataclass
    class Sub(Toy):
        name: str = field(default="x", metadata={"help": "name"})

    p = argparse.ArgumentParser()
    add_dataclass_flags(p, Toy)
    assert vars(p.parse_args([])) == {"on": True, "n": None, "sizes": (1, 2), "hidden_knob": 0.5}
    got = vars(p.parse_args(["--no-on", "--n", "2", "--sizes", "3", "4"]))
    assert got == {"on": False, "n": 2, "sizes": [3, 4], "hidden_knob": 0.5}
    with pytest.raises(SystemExit):
        p.parse_args(["--hidden_knob", "1"])
    q = argparse.ArgumentParser()
    add_dataclass_flags(q, Sub, defaults=False)
    assert vars(q.parse_args(["--name", "y"])) == {"name": "y"}
    with pytest.raises(SystemExit):
        q.parse_args(["--on"])

    @dataclass
    class Bad:
        x: int = field(default=1, metadata={"hlep": "typo"})
    with pytest.raises(TypeError, match="hlep"):
        add_dataclass_flags(argparse.ArgumentParser(), Bad)


def test_train_flags_parse_by_their_field_types():
    from mindeye.cli import build_parser, explicit_train_flags, parse_train
    cfg = parse_train(["--no-hidden", "--subj", "2", "--prior_mult", "0.5", "--max_steps", "7", "--max_lr", "1e-3",
                       "--clip_variant", "SceneCLIP", "--no-use_image_aug", "--ckpt_every_s", "5"])
    assert (cfg.hidden, cfg.subj, cfg.prior_mult, cfg.max_steps, cfg.max_lr, cfg.clip_variant, cfg.use_image_aug,
            cfg.ckpt_every_s) == (False, 2, 0.5, 7, 1e-3, "SceneCLIP", False, 5.0)
    ll = build_parser().parse_args(["train-lowlevel", "--upsampler_channels", "16", "16", "32", "--use_reconst"])
    assert ll.upsampler_channels == [16, 16, 32] and ll.use_reconst is True and ll.prior is False
    for bad in (["train", "--subj", "9"], ["train", "--train_reps", "all"], ["train-lowlevel", "--hidden"],
                ["train", "--val_n_way", "10"], ["train", "--batch_size", "1.5"]):
        try:
            build_parser().parse_args(bad)
            raise AssertionError(f"accepted {bad}")
        except SystemExit as e:
            assert e.code == 2
    # without defaults the parser names only the flags given (a preset fills the rest)
    assert explicit_train_flags(["--no-prior", "--num_epochs", "3", "--preset", "demo"]) == {"prior", "num_epochs",
                                                                                             "preset"}
    assert explicit_train_flags([]) == set()


def test_train_help_lists_every_flag_without_torch():
    out = subprocess.run([sys.executable, "-m", "mindeye", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--hidden, --no-hidden" in out.stdout and "--preset {demo}" in out.stdout
    assert "(default: True)" not in out.stdout  # defaults are written in the help text where it shows them
    out = subprocess.run([sys.executable, "-m", "mindeye", "train-lowlevel", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--upsampler_channels UPSAMPLER_CHANNELS [UPSAMPLER_CHANNELS ...]" in out.stdout
