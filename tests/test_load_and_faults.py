"""Surviving a classroom: malformed API input gets a clear error and writes nothing outside the run folders;
a handful of simulated students (bench/load_test.py's driver, small) get zero errors while a training run
goes on; a training child killed with SIGKILL leaves a loadable checkpoint and shows as failed."""
from __future__ import annotations

import os
from pathlib import Path
import signal
import time

import pytest

from mindeye.data.errors import DataError


@pytest.fixture(scope="module")
def engine(stack_engine):
    return stack_engine


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_malformed_api_input_gets_a_clear_error_and_the_app_survives(engine, tmp_path):
    from .conftest import served_app
    project = engine.runs.root.parent
    before = set(project.rglob("*"))
    with served_app(engine) as client:
        client.predict(0, api_name="/trial")
        rss0 = _rss_mb()
        bad = [((-5,), "/trial", "less than minimum value 0"),
               ((2, 10**9, "final", "image retrieval"), "/retrieve", "maximum"),
               ((2, 7, 2, 5, 3.5, 0, False), "/reconstruct", "maximum value 1"),
               ((2, 0.5, 10**6, 5, 3.5, 0, False), "/reconstruct", "maximum"),
               (("demo", "../../etc", 1, 1, 16, 1e-3, 0.33, False, False, ""), "/train_start", "letters, digits")]
        for args, api, expected in bad:
            try:
                out = client.predict(*args, api_name=api)
            except Exception as e:
                assert expected is not None and expected in str(e), (api, args, str(e))
                assert "Traceback" not in str(e)
            else:
                assert expected is None or expected in str(out), (api, args, out)
        image, caption, table = client.predict(3, api_name="/trial")  # still serving
        assert image and caption
        rss1 = _rss_mb()
        print(f"\nRSS before the bad requests {rss0:.0f} MB, after {rss1:.0f} MB")
        assert rss1 < rss0 * 1.1  # back within 10% of where it started
    assert not (project.parent / "etc").exists() and not (engine.runs.root.parent.parent / "etc").exists()
    created = {p for p in set(project.rglob("*")) - before if engine.runs.root not in p.parents}
    assert not created, created


def test_an_oversized_upload_is_refused_with_the_limit_and_nothing_is_kept(engine, tmp_path, monkeypatch):
    """A 50 MB file posted to the app's upload route (what Your image's picture box uses): refused by the server
    with the limit named, before the app sees it; no file is kept, and the app goes on serving."""
    import tempfile

    import httpx

    from .conftest import served_app
    upload_dir = tmp_path / "gradio_tmp"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(upload_dir))
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(50 * 1024 * 1024))
    with served_app(engine) as client:
        rss0 = _rss_mb()
        with open(big, "rb") as f:
            r = httpx.post(client.src.rstrip("/") + "/gradio_api/upload", files={"files": ("huge.png", f, "image/png")},
                           timeout=60)
        assert r.status_code == 413, (r.status_code, r.text[:200])
        assert "maximum allowed size of 10485760 bytes" in r.text, r.text[:300]  # the limit (10 MB), named
        image, caption, table = client.predict(2, api_name="/trial")  # still serving
        assert caption
        assert _rss_mb() < rss0 + 150  # the 50 MB were not kept in memory
    kept = [p for p in upload_dir.rglob("*") if p.is_file() and p.stat().st_size > 1024 * 1024] if upload_dir.exists() else []
    assert not kept, kept
    assert not [p for p in __import__("pathlib").Path(tempfile.gettempdir()).glob("gradio/**/huge.png")]


def test_a_few_students_get_no_errors_while_a_run_trains(engine):
    from bench.load_test import run_load

    from .conftest import served_app
    from .test_train import TINY_MODEL
    i = TINY_MODEL.index("--batch_size")
    extra = " ".join(TINY_MODEL[:i] + TINY_MODEL[i + 2:] + ["--no-use_image_aug"])
    with served_app(engine) as client:
        url = client.src
        client.predict("demo", "busy", 1, 500, 16, 1e-3, 0.33, False, False, extra, api_name="/train_start")
        try:
            res = run_load(url, engine.n_test, students=4, seconds=12, recon_steps=5)
            status = engine.runs.status("busy")
        finally:
            engine.runs.cancel("busy")
    print(res)
    assert res["errors"] == 0, res["error_examples"]
    assert res["endpoints"]["trial"]["requests"] >= 8  # browsing went on beside reconstructions and training
    assert status.status == "running"


def test_a_training_child_killed_mid_run_leaves_a_loadable_checkpoint_and_shows_failed(engine):
    from mindeye.checkpoints import load_any

    from .test_train import TINY_MODEL
    runs = engine.runs
    runs.start("killed", preset=None, flags={"num_epochs": 500, "ckpt_every_s": 0.0},
               extra=[*TINY_MODEL, "--no-use_image_aug"])
    try:
        best = runs.path("killed") / "best.pth"
        end = time.time() + 120
        while not best.exists() and time.time() < end:
            time.sleep(0.5)
        assert best.exists(), runs.status("killed")
        time.sleep(1.0)  # last.pth is being rewritten every step now (ckpt_every_s 0): kill it mid-stream
        os.killpg(runs.status("killed").pid, signal.SIGKILL)
        end = time.time() + 20
        while runs.status("killed").status == "running" and time.time() < end:
            time.sleep(0.2)
        st = runs.status("killed")
        assert st.status == "failed", st
        for name in ("best.pth", "last.pth"):
            load_any(runs.path("killed") / name)  # atomic writes: never half a file
    finally:
        if runs.status("killed").status == "running":
            runs.cancel("killed")
    with pytest.raises(DataError):
        runs.start("killed", preset=None, flags={})  # the folder of a failed run is never overwritten


def test_corrupt_model_weights_get_a_clear_error_in_the_app_and_the_cli(tiny_stack, tmp_path, capsys):
    """A truncated .safetensors behind a bundle: the Reconstruct endpoint and the `reconstruct` CLI both say which
    file is unreadable and what to do; the app keeps serving the tabs that do not need it."""
    import json
    import shutil
    from pathlib import Path

    from mindeye.bundle import Bundle
    from mindeye.engine import Engine

    from .conftest import served_app
    folder = tmp_path / "bundle"
    folder.mkdir()
    src = Bundle.load(tiny_stack)
    manifest = json.loads((Path(tiny_stack) / "bundle.json").read_text())
    manifest["dataset"]["path"] = str(src.data_path)
    manifest["models"] = {k: str(src.resolve(v)) for k, v in manifest["models"].items()}
    hidden = src.resolve(manifest["models"]["mindeye_hidden"])
    for suffix in (".safetensors", ".json"):  # a copy of the hidden model only: the shared stack stays intact
        shutil.copy(str(hidden) + suffix, folder / f"hidden{suffix}")
    manifest["models"]["mindeye_hidden"] = "hidden"
    (folder / "bundle.json").write_text(json.dumps(manifest))
    weights = folder / "hidden.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    engine = Engine(Bundle.load(folder), log=lambda *a: None)
    with served_app(engine) as client:
        with pytest.raises(Exception, match="unreadable weights .*truncated or not a safetensors file"):
            client.predict(0, 0.85, 1, 5, 3.5, 0, False, api_name="/reconstruct")
        image, caption, table = client.predict(1, api_name="/trial")  # browsing still works
        assert caption
    from mindeye.cli import main
    capsys.readouterr()  # the server's log so far; what follows is the CLI's alone
    try:
        rc = main(["reconstruct", "--bundle", str(folder), "--subj", "1", "--recons_per_sample", "1",
                   "--out", str(tmp_path / "out"), "--trials", "1", "--steps", "2"])
    except SystemExit as e:
        rc = e.code
    assert rc not in (0, None)
    err = capsys.readouterr().err
    assert "unreadable weights" in err and "Traceback" not in err


def test_an_output_image_is_written_once_and_atomically(tmp_path):
    """Two requests returning the same picture must not rewrite the cached file under a third that streams it:
    the second save leaves the first file (same inode, same bytes) in place."""
    import numpy as np
    from gradio import processing_utils as pu

    from components import atomic_image_cache
    atomic_image_cache()
    arr = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    first = pu.save_img_array_to_cache(arr, str(tmp_path))
    with open(first, "rb") as reader:  # a response streaming the file
        inode, data = os.stat(first).st_ino, Path(first).read_bytes()
        second = pu.save_img_array_to_cache(arr, str(tmp_path))
        assert second == first and os.stat(first).st_ino == inode and reader.read() == data and len(data) > 0
    assert not [p for p in Path(first).parent.iterdir() if p.name.startswith(".")]  # no temp file left behind
