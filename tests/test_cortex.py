import numpy as np
import pytest
from scipy.stats import spearmanr

from mindeye.data.cortex import ROIConfig, build_visual_cortex, to_surface
from mindeye.data.simnsd import SUBJECT_PARAMS


@pytest.fixture(scope="module")
def cortex():
    return build_visual_cortex(ROIConfig(n_voxels=3145), np.random.default_rng(0))


def test_roi_size_and_vertices(cortex):
    assert cortex.n_voxels == 3145
    for h in (0, 1):
        v = cortex.vertex[cortex.hemi == h]
        assert len(np.unique(v)) == len(v), "one voxel per vertex"
        assert v.max() < 10242


def test_retinotopy_is_contralateral_and_magnified(cortex):
    early = cortex.area <= 2
    left, right = early & (cortex.hemi == 0), early & (cortex.hemi == 1)
    assert (cortex.prf_x[left] >= -1e-6).all() and (cortex.prf_x[right] <= 1e-6).all()
    dorsal = early & (cortex.v > 0.05)
    assert (cortex.prf_y[dorsal] <= 1e-6).all(), "dorsal cortex maps the lower visual field"
    v1 = cortex.area == 0
    assert spearmanr(cortex.u[v1], cortex.eccentricity[v1]).statistic > 0.95
    assert spearmanr(cortex.eccentricity[v1], cortex.prf_size[v1]).statistic > 0.95


def test_subjects_differ():
    counts = [p["n_voxels"] for p in SUBJECT_PARAMS.values()]
    assert len(set(counts)) == 4
    a = build_visual_cortex(ROIConfig(2000), np.random.default_rng(1))
    b = build_visual_cortex(ROIConfig(2000), np.random.default_rng(2))
    assert not np.array_equal(a.vertex, b.vertex)


def test_to_surface_scatters_values(cortex):
    vals = np.arange(cortex.n_voxels, dtype=np.float32)
    surf = to_surface(vals, cortex.hemi, cortex.vertex)
    assert surf["left"].shape == (10242,)
    assert np.isfinite(surf["left"]).sum() + np.isfinite(surf["right"]).sum() == cortex.n_voxels
    k = 5
    assert surf[("left", "right")[cortex.hemi[k]]][cortex.vertex[k]] == k
