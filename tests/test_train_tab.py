"""The Train tab: mindeye.runs (names, statuses read from disk, dead pids, cancel) with stand-in processes, and
the app's train_start / train_status / train_cancel API on a real tiny training run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
import torch

from mindeye.data.errors import DataError
from mindeye.runs import RunManager, check_name, pid_alive, proc_start_time

from .test_train import TINY_MODEL, tiny_bundle  # noqa: F401  (tiny SimNSD subject + toy SceneCLIP bundle)


def fake_python(tmp_path, body: str) -> str:
    """An executable standing in for ``python`` (called as ``python -m mindeye train ...``): runs ``body``."""
    path = tmp_path / f"fake_python_{abs(hash(body))}"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def wait_for(fn, timeout=20.0, every=0.05):
    end = time.time() + timeout
    while time.time() < end:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


@pytest.fixture
def managers():
    """Make RunManagers; at the end every process they started is killed."""
    made = []

    def make(*args, **kw):
        m = RunManager(*args, **kw)
        made.append(m)
        return m
    yield make
    for m in made:
        for r in m.list():
            if r.status == "running":
                m.cancel(r.name)  # SIGTERM, then SIGKILL to its whole process group


@pytest.mark.parametrize("bad", ["../x", "/tmp/x", "a/b", "", ".", "..", "a b", "x" * 65, "run.1", "~"])
def test_run_names_cannot_leave_the_runs_folder(bad, tmp_path, managers):
    m = managers(tmp_path / "runs")
    with pytest.raises(DataError, match="expected 1-64 letters, digits, '_' or '-'"):
        check_name(bad)
    with pytest.raises(DataError, match="is not allowed"):
        m.start(bad, {"num_epochs": 1})
    with pytest.raises(DataError, match="is not allowed"):
        m.status(bad)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()
    assert m.path("ok_run-1") == (tmp_path / "runs" / "ok_run-1").resolve()


def test_flags_are_checked_before_anything_starts(tmp_path, managers):
    m = managers(tmp_path / "runs", python=fake_python(tmp_path, "exit 0"))
    with pytest.raises(DataError, match="--num_epochs cannot be given among the extra flags: the form sets it"):
        m.start("a", {"num_epochs": 2}, extra="--num_epochs 3")
    with pytest.raises(DataError, match="--out cannot be given among the extra flags: the run manager sets it"):
        m.start("a", {}, extra="--out /tmp")
    with pytest.raises(DataError, match="--model_name cannot be given among the extra flags: the run manager sets it"):
        m.start("a", {}, extra="--model_name=../../escaped")
    with pytest.raises(DataError, match="unknown training flag '--model_nam' among the extra flags; write flags in full"):
        m.start("a", {}, extra="--model_nam ../../escaped")  # argparse would take the abbreviation
    with pytest.raises(DataError, match="unknown training flag '--bogus'"):
        m.start("a", {}, extra="--bogus 1")
    with pytest.raises(DataError, match="invalid training flags: .*unrecognized arguments: stray"):
        m.start("a", {}, extra="--seed 1 stray")
    with pytest.raises(DataError, match="invalid training flags: .*--batch_size: invalid int value: 'many'"):
        m.start("a", {"batch_size": "many"})
    with pytest.raises(DataError, match="unknown training flag 'num_epoch'"):
        m.start("a", {"num_epoch": 2})
    with pytest.raises(DataError, match="unknown preset 'fast'"):
        m.start("a", {}, preset="fast")
    assert m.list() == []


def test_finished_and_failed_runs_are_read_from_their_folders(tmp_path, managers):
    ok = fake_python(tmp_path, 'echo "training ok: $*"; exit 0')
    boom = fake_python(tmp_path, 'echo "loading data"; echo "Traceback: something broke" >&2; exit 3')
    m = managers(tmp_path / "runs", python=ok)
    st = m.start("good", {"num_epochs": 4}, preset="demo")
    assert st.epochs_planned == 4 and st.started
    st = wait_for(lambda: (s := m.status("good")).status != "running" and s)
    assert (st.status, st.exit_code, st.error) == ("finished", 0, "")
    log = m.log_tail("good")
    # the command the child got: the preset's flags, the form's over them, the manager's own
    assert "--model_name good --out " + str((tmp_path / "runs").resolve()) in log
    assert "--num_epochs 4" in log and "--hidden_dim 512" in log and "--no-prior" in log
    m.python = boom
    m.start("bad", {"num_epochs": 1})
    st = wait_for(lambda: (s := m.status("bad")).status != "running" and s)
    assert (st.status, st.exit_code) == ("failed", 3)
    assert "exited with code 3" in st.error and "Traceback: something broke" in st.error
    assert "loading data" in m.log_tail("bad") and "something broke" in m.log_tail("bad")
    # a run made by the command line (no run.json): finished when every planned epoch is logged
    cli = tmp_path / "runs" / "from_cli"
    cli.mkdir()
    (cli / "config.json").write_text(json.dumps({"num_epochs": 2, "subj": 1}))
    rows = [{"step": 5, "epoch": 0, "loss": 3.0, "lr": 1e-4},
            {"epoch": 0, "step": 5, "val_fwd_top1": 0.1, "val_bwd_top1": 0.3},
            {"epoch": 1, "step": 10, "val_fwd_top1": 0.5, "val_bwd_top1": 0.2}]
    (cli / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 2, "ste')
    st = m.status("from_cli")
    assert (st.status, st.epochs_done, st.epochs_planned, st.best_val_top1, st.steps) == ("finished", 2, 2, 0.35, 10)
    (cli / "config.json").write_text(json.dumps({"num_epochs": 3}))
    assert m.status("from_cli").status == "incomplete"
    assert {r.name: r.status for r in m.list()} == {"good": "finished", "bad": "failed", "from_cli": "incomplete"}


def test_a_run_survives_an_app_restart_and_cancels_by_process_group(tmp_path, managers):
    # the stand-in forks a child of its own (as training's workers would): cancelling must end both
    sleeper = fake_python(tmp_path, 'sleep 120 & echo "child $!"; wait')
    m = managers(tmp_path / "runs", python=sleeper)
    st = m.start("long", {"num_epochs": 3})
    assert st.status == "running" and pid_alive(st.pid)
    child = int(wait_for(lambda: m.log_tail("long")).split()[-1])
    with pytest.raises(DataError, match="a run named 'long' is already running"):
        m.start("long", {"num_epochs": 3})
    restarted = managers(tmp_path / "runs", python=sleeper)  # a new app process: state comes from disk only
    assert restarted.status("long").status == "running"
    st = restarted.cancel("long")
    assert st.status == "cancelled"
    assert not pid_alive(st.pid) and not pid_alive(child)
    with pytest.raises(DataError, match="not running \\(it is cancelled\\); there is nothing to cancel"):
        restarted.cancel("long")
    with pytest.raises(DataError, match="already holds a cancelled run; .* e.g. 'long_2'"):
        m.start("long", {"num_epochs": 3})


def test_a_dead_pid_is_detected(tmp_path):
    m = RunManager(tmp_path / "runs")  # (not cancelled at the end: "alive" is this test process)
    gone = subprocess.Popen(["true"])
    gone.wait()
    for name, pid, start in (("vanished", gone.pid, None),
                             ("pid_reused", os.getpid(), proc_start_time(os.getpid()) - 1),
                             ("alive", os.getpid(), proc_start_time(os.getpid()))):
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"name": name, "pid": pid, "pgid": pid, "proc_start": start,
                                                "status": "running", "planned_epochs": 2}))
    st = m.status("vanished")
    assert st.status == "failed" and st.exit_code is None
    assert f"(pid {gone.pid}) is gone without an exit code" in st.error
    assert m.status("pid_reused").status == "failed"  # the pid lives, but it is another process now
    assert m.status("alive").status == "running"


def test_use_run_refuses_a_run_of_another_subject(tiny_bundle, tmp_path):  # noqa: F811
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine
    engine = Engine(Bundle.load(tiny_bundle))
    engine.runs = RunManager(tmp_path / "runs")
    d = tmp_path / "runs" / "subj2"
    d.mkdir(parents=True)
    with pytest.raises(DataError, match="no best.pth yet"):
        engine.use_run("subj2")
    torch.save({"model_state_dict": {}, "config": {"hidden": False, "prior": False},
                "data": {"subject": 2, "n_voxels": engine.data.n_voxels, "fingerprint": "0123"}}, d / "best.pth")
    with pytest.raises(DataError, match="checkpoint is for subject=2, this run has subject=1"):
        engine.use_run("subj2")


def test_app_starts_watches_and_cancels_a_tiny_run(tiny_bundle, tmp_path):  # noqa: F811
    from mindeye.bundle import Bundle
    from mindeye.checkpoints import load_any
    from mindeye.engine import Engine, Model

    from .conftest import served_app
    engine = Engine(Bundle.load(tiny_bundle))
    runs = RunManager(tmp_path / "runs", bundle=tiny_bundle, data_path=engine.bundle.data_path,
                      env={"OMP_NUM_THREADS": "1", "MINDEYE_CACHE_DIR": tmp_path / "cache"})
    engine.runs = runs
    # the tiny model's flags, less the batch size the form sets
    i = TINY_MODEL.index("--batch_size")
    extra = " ".join(TINY_MODEL[:i] + TINY_MODEL[i + 2:] + ["--no-use_image_aug"])
    try:
        with served_app(engine) as client:
            name, message = client.predict("demo", "tiny", 1, 500, 16, 1e-3, 0.33, False, False, extra,
                                           api_name="/train_start")
            assert name == "tiny" and "started **tiny**: 500 epochs on subject 1" in message
            seen, end = [], time.time() + 75
            while time.time() < end:
                _, table, details, loss, lr, acc, log = client.predict("tiny", api_name="/train_status")
                assert details["name"] == "tiny" and details["status"] == "running", details
                if details["steps"] and (not seen or details["steps"] > seen[-1]["steps"]):
                    seen.append(details)
                if len(seen) >= 2 and details["epochs_done"] >= 1:
                    break
                time.sleep(0.5)
            assert len(seen) >= 2, f"fewer than two metric updates in 75 s: {seen}, log: {log}"
            assert table["data"][0][:2] == ["tiny", "running"] and table["data"][0][2].endswith("/500")
            plots = {k: json.loads(p) for k, p in (("loss", loss), ("lr", lr), ("acc", acc))}  # figure JSON
            assert len(plots["loss"]["data"][0]["x"]) >= seen[-1]["steps"] - 1
            assert plots["loss"]["layout"]["uirevision"] == "tiny"  # refreshes keep the zoom
            assert len(plots["acc"]["data"][0]["x"]) >= 1  # val retrieval per epoch
            assert re.search(r"epoch \d+: val loss [\d.]+ · top-1 val", log), log  # epoch records shown readably
            assert "final-layer model" in client.predict("tiny", api_name="/train_use")
            assert engine.model(Model.FINAL).meta["config"]["model_name"] == "tiny"
            message, details = client.predict("tiny", api_name="/train_cancel")
            assert details["status"] == "cancelled" and "cancelled **tiny**" in message
            assert not pid_alive(details["pid"])
            _, _, details, *_ = client.predict("tiny", api_name="/train_status")
            assert details["status"] == "cancelled"
        load_any(runs.path("tiny") / "best.pth")  # what was written before the cancel stays loadable
    finally:  # whatever happened above, no training process outlives the test
        for r in runs.list():
            if r.status == "running":
                runs.cancel(r.name)
