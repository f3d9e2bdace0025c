"""Shared fixtures: no network, a tiny SimNSD subject made once per session."""
from __future__ import annotations

import contextlib
import json
import os
import socket

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = dict(subj=1, n_train=120, n_test=60, image_size=96, n_sessions=6)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never touch the network: any connection to a non-loopback address fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")):
            raise RuntimeError(f"test tried to reach the network: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_sim(tmp_path_factory):
    """A tiny SimNSD subject 1 (120 train + 60 test images): ``(folder, summary)``."""
    from mindeye.data.simnsd import SimConfig, simulate

    out = tmp_path_factory.mktemp("simnsd")
    summary = simulate(out, SimConfig(**TINY), workers=1, log=lambda *a: None)
    return out, summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def cache_dir(path):
    """Point the project's caches (MINDEYE_CACHE_DIR) at ``path`` for the block, then restore the old value."""
    old = os.environ.get("MINDEYE_CACHE_DIR")
    os.environ["MINDEYE_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINDEYE_CACHE_DIR", None)
        else:
            os.environ["MINDEYE_CACHE_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """Tests never write into the project's cache/ (CLIP targets, ridge fits, UMAPs): the session's caches live in a
    temporary folder, unless a test points them elsewhere with ``cache_dir``."""
    with cache_dir(tmp_path_factory.mktemp("cache")):
        yield


class served_app:
    """``with served_app(engine) as client:`` the real app on a free loopback port, and a gradio_client on it."""

    def __init__(self, engine, **build):
        self.engine, self.build = engine, build

    def __enter__(self):
        from gradio_client import Client

        from app import build_app, launch_options
        port = free_port()
        self.demo = build_app(self.engine, **self.build)
        self.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                         **launch_options(self.engine))
        self.url = f"http://127.0.0.1:{port}/"
        return Client(f"http://127.0.0.1:{port}/", verbose=False)

    def __exit__(self, *exc):
        self.demo.close()


@pytest.fixture(scope="session")
def tiny_stack(tiny_sim, tmp_path_factory):
    """A whole tiny bundle (SceneCLIP, VAE, judge, decoder, MindEye hidden + prior, final, low-level), built once
    per test session by `build-demo --tiny` over the tiny SimNSD subject."""
    from mindeye.cli import main
    root = tmp_path_factory.mktemp("stack")
    out, work = root / "demo", root / "work"
    with cache_dir(root / "cache"):
        build = ["build-demo", "--tiny", "--out", str(out), "--work", str(work), "--workers", "0", "--stages"]
        assert main([*build, "clip,vae,judge,decoder"]) == 0
        manifest = json.loads((out / "bundle.json").read_text())
        manifest["dataset"] = {"kind": "simnsd", "path": str(tiny_sim[0]), "subject": 1, "seed": 0}
        (out / "bundle.json").write_text(json.dumps(manifest))
        assert main([*build, "mindeye"]) == 0
    return out


@pytest.fixture(scope="module")
def stack_engine(tiny_stack, tmp_path_factory):
    """An Engine on the tiny stack whose training runs (and their cache) live in a temporary folder."""
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine
    from mindeye.runs import RunManager
    e = Engine(Bundle.load(tiny_stack), log=lambda *a: None)
    root = tmp_path_factory.mktemp("runs")
    e.runs = RunManager(root / "runs", bundle=tiny_stack, data_path=e.bundle.data_path,
                        env={"OMP_NUM_THREADS": "1", "MINDEYE_CACHE_DIR": root / "cache"})
    return e
