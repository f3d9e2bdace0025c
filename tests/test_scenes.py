import numpy as np

from mindeye.data import scenes


def test_scenes_are_deterministic_and_distinct():
    a, cap_a, lab_a = scenes.make_scenes([3, 4, 5], seed=1)
    b, cap_b, _ = scenes.make_scenes([3, 4, 5], seed=1)
    c, _, _ = scenes.make_scenes([3, 4, 5], seed=2)
    assert a.shape == (3, 96, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and cap_a == cap_b
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])


def test_labels_match_captions_and_order():
    ids = range(200)
    _, caps, lab = scenes.make_scenes(ids, seed=0, size=64)
    for i, cap in enumerate(caps):
        n = lab["n_objects"][i]
        assert 1 <= n <= 3
        assert (lab["shape"][i, :n] >= 0).all() and (lab["shape"][i, n:] == -1).all()
        assert (np.diff(lab["size"][i, :n]) <= 0).all(), "objects are stored largest first"
        first = f"{scenes.COLOUR_NAMES[lab['colour'][i, 0]]} {scenes.SHAPES[lab['shape'][i, 0]]}"
        assert first in cap and cap.endswith(scenes.BACKGROUNDS[lab["background"][i]])
    # every shape class, colour and background occurs
    assert set(np.unique(lab["shape"][:, 0])) == set(range(len(scenes.SHAPES)))
    assert set(np.unique(lab["background"])) == set(range(len(scenes.BACKGROUNDS)))


def test_object_colour_is_visible_in_the_pixels():
    img, _, lab = scenes.make_scenes([11], seed=0)
    x, y = lab["x"][0, 0], lab["y"][0, 0]
    shape = scenes.SHAPES[lab["shape"][0, 0]]
    if shape in ("ring", "moon"):  # hollow at the centre
        return
    px = img[0, int(y * 96), int(x * 96)].astype(int)
    want = np.array(scenes.COLOURS[scenes.COLOUR_NAMES[lab["colour"][0, 0]]])
    assert np.abs(px - want).max() < 90
