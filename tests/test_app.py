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
        view = engine.brain_view(3, m)
        assert all(len(p["values"]) == 3145 for p in view["panels"]), m
        assert view["note"], m  # every map says what it shows
    with pytest.raises(DataError, match="test trial 60 out of range: this subject has 60 test images"):
        engine.test_trial(60)


def test_response_view_shows_the_average_and_each_repetition_and_sends_values_only(engine):
    """A trial update carries one value per voxel per panel (the average and the three repetitions), not the
    mesh: it stays far under 300 KB, and the panel on the 3-D surface is the chosen response."""
    import json

    from mindeye.engine import RESPONSES
    v = engine.brain_view(3, "response", "repetition 2")
    assert [p["title"] for p in v["panels"]] == ["average of 3", "repetition 1", "repetition 2", "repetition 3"]
    assert v["surface"] == 2
    assert np.allclose(v["panels"][2]["values"], np.round(engine.response(3, RESPONSES[2]), 2))
    assert len(json.dumps(v)) < 300_000
    areas = engine.brain_view(3, "visual areas")["panels"][0]
    assert areas["ticktext"] == ["V1", "V2", "V3", "VO", "LO", "IPS"]  # a categorical legend, not a colour bar


def test_surface_geometry_matches_the_voxels(engine):
    """Each voxel sits on its own fsaverage5 vertex in the ROI patch, and every view names its hemispheres
    (medial and lateral views show one, so the other does not hide the medial wall)."""
    import json
    g = json.loads(engine.surface_geometry_file().read_text())
    hemi, vertex = engine.data.geometry.hemi, engine.data.geometry.vertex
    seen = []
    for h_idx, h in enumerate(("left", "right")):
        part = g["hemis"][h]
        roi = part["roi"]
        assert len(part["x"]) == 10242 and len(roi["x"]) == len(roi["voxels"]) == int((hemi == h_idx).sum())
        assert max(roi["i"] + roi["j"] + roi["k"]) < len(roi["x"])
        # the patch vertex of voxel v lies 0.5 mm off the mesh vertex it maps to
        v = roi["voxels"][0]
        mesh_xyz = np.array([part[a][vertex[v]] for a in "xyz"])
        assert np.linalg.norm(np.array([roi[a][0] for a in "xyz"]) - mesh_xyz) < 0.7
        seen += roi["voxels"]
    assert sorted(seen) == list(range(len(hemi)))
    assert len(g["flat"]["x"]) == len(hemi)
    assert engine.brain_view(3, view="left medial")["camera"]["hemis"] == ["left"]
    assert engine.brain_view(3, view="posterior")["camera"]["hemis"] == ["left", "right"]


def test_bad_views_and_maps_are_named(engine):
    with pytest.raises(DataError, match="unknown view 'medial'"):
        engine.brain_view(3, "response", view="medial")
    with pytest.raises(DataError, match="unknown map 'curvature'"):
        engine.brain_view(3, "curvature")
    with pytest.raises(DataError, match="out of range"):
        engine.brain_view(99, "response")


def test_trial_search_and_input_clamping(engine):
    from components.trials import clamp_trial
    assert [clamp_trial(engine, x) for x in (-5, 5000, "abc", None, "7", 2.6)] == [0, 59, 0, 0, 7, 3]
    word = engine.test_trial(4).caption.split()[-1]
    hits = engine.find_trials(word)
    assert 4 in hits and all(word.lower() in engine.test_trial(i).caption.lower() for i in hits)
    assert engine.find_trials("") == list(range(48))
    assert [t.shape for t in engine.thumbnails(hits[:2])] == [(96, 96, 3)] * min(2, len(hits))


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


def test_header_picker_switches_bundle_and_subject(engine, tmp_path):
    """The header offers the bundles found and their dataset's subjects; "load" hands a valid choice to the
    server's switch (which restarts the app on it), and refuses what is not offered."""
    from mindeye.bundle import Bundle

    from .conftest import served_app
    asked = []
    folder = str(engine.bundle.folder.resolve())
    with served_app(engine, switch=lambda f, s: asked.append((str(f), s))) as client:
        client.predict(folder, 2, api_name="/switch")
        assert asked == [(folder, 2)]
        for args, expected in (((folder, 3), "3 is not in the list of choices"),
                               ((folder, engine.bundle.subject), "loaded now"),
                               ((str(tmp_path), 1), "not in the list of choices")):
            with pytest.raises(Exception, match=expected):
                client.predict(*args, api_name="/switch")
        assert len(asked) == 1


def test_another_subject_keeps_only_the_models_it_can_use(tiny_stack):
    """MindEye models record their subject; on another subject of the dataset they are left out (so the app
    builds only the tabs it can serve), the subject-free CLIP, VAE, decoder and judge stay."""
    b = Bundle.load(tiny_stack)
    assert b.subjects() == [1, 2, 5, 7] and b.model_subject("mindeye_final") == 1 and b.model_subject("clip") is None
    other = b.for_subject(2)
    assert other.subject == 2 and not {"mindeye_hidden", "mindeye_final", "lowlevel"} & set(other.models)
    assert {"clip", "decoder", "judge", "vae"} <= set(other.models)
    assert b.for_subject(1) is b
    with pytest.raises(DataError, match=r"subject 3 is not in .* it offers subjects \[1, 2, 5, 7\]"):
        b.for_subject(3)
