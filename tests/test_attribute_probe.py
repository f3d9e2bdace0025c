"""bench/attribute_probe.py's probes: they read an attribute that is linearly in the input, and not one that is not."""
import numpy as np


def test_a_probe_reads_a_linearly_coded_attribute_and_not_noise():
    from bench.attribute_probe import attributes, probe
    rng = np.random.default_rng(0)
    n, d = 600, 40
    shape = rng.integers(0, 4, n)
    coded = rng.normal(0, 1, (n, d)) + 3 * np.eye(4, d)[shape]  # shape is a direction of the input
    noise = rng.normal(0, 1, (n, d))  # knows nothing of it
    tr, te = slice(0, 400), slice(400, None)
    out = probe(coded[tr], {"shape": shape[tr]}, {"coded": coded[te], "noise": noise[te]}, {"shape": shape[te]})
    assert out["coded"]["shape"] > 0.9
    assert out["noise"]["shape"] < 0.45  # chance is about 0.25
    labels = {"shape": np.array([[2, 1, -1], [0, -1, -1]]), "colour": np.array([[5, 3, -1], [1, -1, -1]])}
    a = attributes(labels)
    assert a["shape"].tolist() == [2, 0] and a["colour"].tolist() == [5, 1] and a["count"].tolist() == [2, 1]
