"""The Your image tab's loop on the tiny stack: compose a scene, let the rebuilt simulated cortex answer it,
decode the answer with the bundle's models, over HTTP too."""
from __future__ import annotations

import numpy as np
import pytest

from mindeye.data.errors import DataError


@pytest.fixture(scope="module")
def engine(tiny_stack):
    from mindeye.bundle import Bundle
    from mindeye.engine import Engine
    return Engine(Bundle.load(tiny_stack), log=lambda *a: None)


def test_compose_orders_objects_largest_first_and_names_bad_input(engine):
    scene = engine.compose("sand", [dict(shape="circle", colour="blue", size="small", x=0.2, y=0.3),
                                    dict(shape="star", colour="red", size="large", x=0.7, y=0.6)])
    assert scene.image.shape == engine.test_trial(0).image.shape
    assert list(scene.labels["shape"][:2]) == [3, 0] and int(scene.labels["n_objects"]) == 2  # star, circle
    assert "red star" in scene.caption and "blue circle" in scene.caption
    with pytest.raises(DataError, match="colour should be one of .*'red'.* got 'mauve'"):
        engine.compose("sand", [dict(shape="circle", colour="mauve", size="small")])
    with pytest.raises(DataError, match="background should be one of"):
        engine.compose("moon", [dict(shape="circle", colour="red", size="small")])
    with pytest.raises(DataError, match="1 to 3 objects, got 0"):
        engine.compose("sand", [])


def test_the_rebuilt_cortex_answers_a_test_image_as_the_dataset_recorded(engine):
    """The simulator rebuilt from the dataset's stored config gives a test image's stored noise-free response:
    the composed-scene responses come from the same brain the models were trained on."""
    from mindeye.data import scenes
    from mindeye.engine import SceneResponse
    gt = engine.ground_truth
    image_id = int(gt["test_image_id"][0])
    sc = scenes.sample_scene(engine.sim_subject().cfg.seed, image_id)
    img = engine.data.images([image_id])[0]
    labels = {k: v[0] for k, v in scenes.labels_of([sc]).items()}
    resp = engine.respond(SceneResponse(img, sc.caption, labels), noise=0.0)
    assert np.allclose(resp.noise_free, gt["test_noise_free"][0], atol=2e-2)


def test_noise_slider_goes_from_noise_free_to_a_single_trial(engine):
    scene = engine.compose("grass", [dict(shape="star", colour="red", size="large", x=0.3, y=0.4)])
    clean = engine.respond(scene, noise=0.0, seed=1)
    again = engine.respond(scene, noise=0.58, seed=1)
    assert np.array_equal(again.betas, engine.respond(scene, noise=0.58, seed=1).betas)  # seeded
    corr = [np.corrcoef(clean.betas, engine.respond(scene, noise=n, seed=1).betas)[0, 1] for n in (0.0, 0.3, 1.0)]
    assert corr[0] > 0.999 and corr[0] > corr[1] > corr[2]
    with pytest.raises(DataError, match="noise should be between 0"):
        engine.respond(scene, noise=1.5)


def test_the_loop_over_http(engine):
    from .conftest import served_app
    with served_app(engine) as client:
        out = client.predict("compose a scene", None, None, "grass", True, "star", "red", "large", 0.3, 0.4,
                             False, "circle", "blue", "medium", 0.7, 0.7,
                             False, "square", "yellow", "small", 0.7, 0.25,
                             0.58, 0, "posterior", api_name="/your_image")
    seen, low, picked, caption, view, gallery = out[:6]
    assert "red star" in caption
    assert picked and seen and len(gallery) == 6
    assert '"panels"' in view and len(view) < 300_000


def test_an_uploaded_picture_is_read_by_the_judge_and_answered(engine):
    """Any picture becomes a stimulus: cropped square, resized, its objects read by the judge (named in the
    caption), answered by the simulated cortex; a wrong shape is refused with what was expected."""
    from mindeye.data import scenes
    wide = np.zeros((60, 140, 3), np.uint8)
    wide[:, 40:100] = scenes.render(scenes.sample_scene(0, 5), size=60)
    scene = engine.scene_from_picture(wide)
    assert scene.image.shape == engine.test_trial(0).image.shape
    assert scene.caption.startswith("your picture (the judge reads: ")
    assert int(scene.labels["n_objects"]) >= 1 and scene.labels["size"][0] == 1
    resp = engine.respond(scene, noise=0.0)
    assert resp.betas.shape == (engine.data.n_voxels,) and np.isfinite(resp.betas).all()
    with pytest.raises(DataError, match=r"expected a picture \[height, width, 3\]"):
        engine.scene_from_picture(np.zeros((4, 4, 3), np.uint8))


def test_a_drawing_is_a_picture_on_white(engine):
    """The Sketchpad's composite (RGBA, transparent where nothing is drawn) reads as strokes on white; an empty
    canvas is refused with what to do."""
    from components.your_image import canvas_for, drawing
    canvas = np.zeros((80, 80, 4), np.uint8)  # fully transparent
    assert drawing({"composite": canvas, "layers": [], "background": None}) is None
    canvas[20:60, 20:60] = (220, 40, 40, 255)  # a red square
    img = drawing({"composite": canvas})
    assert img.shape == (80, 80, 3) and tuple(img[0, 0]) == (255, 255, 255) and tuple(img[40, 40]) == (220, 40, 40)
    scene = engine.scene_from_picture(img)
    assert scene.caption.startswith("your picture (the judge reads: ")
    rgba = engine.scene_from_picture(canvas)  # RGBA straight to the engine: composited on white the same way
    assert np.array_equal(rgba.image, scene.image)

    grass = {"background": np.asarray(canvas_for("grass")), "layers": [np.zeros((320, 320, 4), np.uint8)],
             "composite": np.asarray(canvas_for("grass"))}
    assert drawing(grass) is None  # a textured canvas with nothing on it is not a drawing
    grass["layers"][0][100:200, 100:200] = (40, 70, 220, 255)
    assert drawing(grass) is not None
