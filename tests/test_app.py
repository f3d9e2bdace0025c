"""The real app over HTTP (gradio_client), on the tiny SimNSD subject."""
import numpy as np
import pytest

from mindeye.bundle import Bundle
from mindeye.data.errors import DataError
from mindeye.engine import MAPS, Engine


@pytest.fixture(scope="module")
def engine(tiny_sim, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    (folder / "bundle.json").write_text(
        '{"name": "tiny", "dataset": {"kind": "simnsd", "path": "%s", "subject": 1}}' % tiny_sim[0])
    return Engine(Bundle.load(folder))


def test_engine_trials_and_maps(engine):
    assert engine.n_test == 60
    t = engine.test_trial(3)
    assert t.image.shape == (96, 96, 3) and t.caption
    assert "3,145 voxels" in engine.describe()
    r1 = engine.response(3, "repetition 1")
    assert not np.allclose(r1, engine.response(3))
    for m in MAPS:
        fig = engine.brain_map(3, m)
        assert [type(d).__name__ for d in fig.data] == ["Mesh3d", "Mesh3d"], m
    with pytest.raises(DataError, match="test trial 60 out of range: this subject has 60 test images"):
        engine.test_trial(60)


def test_every_surface_view_draws(engine):
    """nilearn draws medial / lateral views of one hemisphere only: those views name their hemisphere."""
    from mindeye.engine import VIEWS
    for view in VIEWS:
        fig = engine.brain_map(3, "response", view=view)
        assert any(type(d).__name__ == "Mesh3d" for d in fig.data), view
    with pytest.raises(DataError, match="unknown view 'medial'"):
        engine.brain_map(3, "response", view="medial")


def test_bundle_errors(tmp_path):
    with pytest.raises(DataError, match="no bundle manifest"):
        Bundle.load(tmp_path)
    (tmp_path / "bundle.json").write_text('{"dataset": {"kind": "fmri", "path": "x", "subject": 1}}')
    with pytest.raises(DataError, match="dataset.kind should be 'simnsd' or 'nsd', found 'fmri'"):
        Bundle.load(tmp_path)


def test_app_serves_trials_over_http(engine):
    from PIL import Image

    from .conftest import served_app
    with served_app(engine) as client:
        image, caption, table = client.predict(7, api_name="/trial")
        expected = engine.test_trial(7)
        assert expected.caption in caption
        assert np.array_equal(np.asarray(Image.open(image).convert("RGB")), expected.image)
        assert len(table["data"]) == int(expected.labels["n_objects"])


def test_demo_bundle_manifest_is_valid():
    b = Bundle.load()
    assert b.dataset_kind == "simnsd" and b.subject == 1


def test_app_command_line_errors_are_one_line_and_start_nothing(tmp_path, capsys):
    """Bad --port / --auth / --data and a busy port end with one line naming what was expected, before any
    model or dataset is loaded."""
    import socket

    from app import main
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    (tmp_path / "notes.txt").write_text("x")
    cases = {("--port", "99999"): "between 1 and 65535",
             ("--port", str(port)): f"port {port} on 127.0.0.1 is already in use",
             ("--auth", "bob"): "USER:PASS",
             ("--data", str(tmp_path / "notes.txt")): "is a file",
             ("--data", str(tmp_path / "nowhere")): "is not there"}
    try:
        for argv, expected in cases.items():
            with pytest.raises(SystemExit) as e:
                main(list(argv))
            assert e.value.code == 2
            err = capsys.readouterr().err
            assert expected in err, (argv, err)
            assert "Traceback" not in err
    finally:
        busy.close()
    assert not (tmp_path / "nowhere").exists()
