"""Cortical surface geometry for SimNSD: fsaverage5 (bundled with nilearn, so offline) and a simulated
nsdgeneral-like posterior ROI with retinotopic early visual areas and higher, category-tuned areas.

The layout is a cartoon of human visual cortex that keeps what matters for decoding and teaching:
the fovea sits at the occipital pole and eccentricity grows anteriorly on a log scale (cortical
magnification); polar angle alternates between the horizontal and vertical meridians across V1, V2 and
V3 (mirror reversals at the area borders); dorsal cortex maps the lower visual field and ventral cortex
the upper field; each hemisphere sees the contralateral hemifield. Anterior to V3 sit higher areas:
a ventral colour/shape area ("VO"), a lateral object area ("LO") and a dorsal layout area ("IPS").
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

AREAS = ("V1", "V2", "V3", "VO", "LO", "IPS")
HEMIS = ("left", "right")
N_VERTICES = 10242  # per hemisphere on fsaverage5


@lru_cache(maxsize=None)
def fsaverage5(kind: str = "sphere") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """fsaverage5 meshes from nilearn's bundled copy: ``{hemi: (coords [10242,3], faces [20480,3])}``.

    ``kind`` is one of sphere, inflated, pial, white, flat.
    """
    from nilearn import datasets, surface

    key = {"inflated": "infl"}.get(kind, kind)
    fs = datasets.fetch_surf_fsaverage("fsaverage5")  # bundled with nilearn: never downloads
    out = {}
    for hemi in HEMIS:
        mesh = surface.load_surf_mesh(fs[f"{key}_{hemi}"])
        out[hemi] = (np.asarray(mesh.coordinates, np.float32), np.asarray(mesh.faces, np.int32))
    return out


@lru_cache(maxsize=None)
def sulcal_depth() -> dict[str, np.ndarray]:
    """Per-vertex sulcal depth (for shading surface plots)."""
    from nilearn import datasets, surface

    fs = datasets.fetch_surf_fsaverage("fsaverage5")
    return {h: np.asarray(surface.load_surf_data(fs[f"sulc_{h}"]), np.float32) for h in HEMIS}


@dataclass(frozen=True)
class ROIConfig:
    """How one simulated subject's visual cortex sits on fsaverage5."""
    n_voxels: int
    pole_jitter: float = 0.05  # per-subject shift of the occipital pole (radians on the sphere)
    elongation: float = 1.6  # anterior extent / dorsoventral extent of the ROI
    higher_fraction: float = 0.38  # share of the ROI's anterior extent given to higher areas


@dataclass
class VisualCortex:
    """Voxels of one subject: their surface vertex and ground-truth functional layout (all arrays [V])."""
    hemi: np.ndarray  # 0 left, 1 right
    vertex: np.ndarray  # fsaverage5 vertex index within the hemisphere
    area: np.ndarray  # index into AREAS
    u: np.ndarray  # cortical position: 0 at the occipital pole, 1 at the anterior ROI border
    v: np.ndarray  # cortical position: -1 ventral .. +1 dorsal
    prf_x: np.ndarray  # pRF centre in the visual field, units of image half-width, + = right
    prf_y: np.ndarray  # + = up
    prf_size: np.ndarray  # pRF Gaussian sigma, same units
    eccentricity: np.ndarray
    polar_angle: np.ndarray  # degrees, 0 = right horizontal meridian, 90 = upper vertical meridian

    @property
    def n_voxels(self) -> int:
        return len(self.vertex)


def _frame(pole: np.ndarray, medial_sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Tangent directions at the pole: ``a`` runs anteriorly along the medial surface, ``t`` dorsally."""
    a = np.array([medial_sign * 0.8, 1.0, 0.0])
    a -= a.dot(pole) * pole
    a /= np.linalg.norm(a)
    t = np.cross(pole, a)
    if t[2] < 0:
        t = -t
    return a, t


def build_visual_cortex(cfg: ROIConfig, rng: np.random.Generator, ecc_max: float = 1.4,
                        fovea: float = 0.12) -> VisualCortex:
    """Pick ``cfg.n_voxels`` posterior vertices (split over both hemispheres) and lay visual areas on them."""
    sphere = fsaverage5("sphere")
    per_hemi = [cfg.n_voxels // 2 + cfg.n_voxels % 2, cfg.n_voxels // 2]
    fields = {k: [] for k in ("hemi", "vertex", "u", "v")}
    for h, hemi in enumerate(HEMIS):
        coords = sphere[hemi][0].astype(np.float64)
        d = coords / np.linalg.norm(coords, axis=1, keepdims=True)
        medial = 1.0 if hemi == "left" else -1.0  # medial wall faces +x for the left hemisphere
        pole = np.array([medial * 0.25, -1.0, -0.15]) + rng.normal(0, cfg.pole_jitter, 3)
        pole /= np.linalg.norm(pole)
        a, t = _frame(pole, medial)
        front = d @ pole
        s = np.arctan2(d @ a, front)  # angle from the pole, anterior positive
        z = np.arctan2(d @ t, front)  # angle from the pole, dorsal positive
        # A half-ellipse in front of the pole: rank vertices by how far inside it they sit.
        score = np.maximum(np.where(s < 0, -s * 8, s / cfg.elongation), np.abs(z))
        score[front <= 0] = np.inf
        chosen = np.sort(np.argsort(score, kind="stable")[: per_hemi[h]])
        s_c, z_c = s[chosen], z[chosen]
        u = np.clip(s_c, 0, None) / max(np.clip(s_c, 0, None).max(), 1e-6)
        v = z_c / max(np.abs(z_c).max(), 1e-6)
        fields["hemi"].append(np.full(len(chosen), h, np.int8))
        fields["vertex"].append(chosen.astype(np.int32))
        fields["u"].append(u.astype(np.float32))
        fields["v"].append(v.astype(np.float32))
    hemi, vertex, u, v = (np.concatenate(fields[k]) for k in ("hemi", "vertex", "u", "v"))

    early = u < 1 - cfg.higher_fraction
    u_early = np.clip(u / (1 - cfg.higher_fraction), 0, 1)
    # log cortical magnification: eccentricity grows exponentially with distance from the pole
    ecc = fovea * (np.exp(u_early * np.log(1 + ecc_max / fovea)) - 1)
    band = np.abs(v) * 3  # 0..3 across V1, V2, V3
    area = np.where(early, np.minimum(band.astype(int), 2), 0)
    frac = band - np.floor(np.minimum(band, 2.999))
    # V1 runs horizontal -> vertical meridian, V2 back to horizontal, V3 to vertical again
    angle_mag = np.where(area == 1, 1 - frac, frac) * 90.0
    angle = -np.sign(v) * angle_mag  # dorsal cortex (v>0) maps the lower visual field
    # higher areas: ventral (VO), lateral (LO), dorsal (IPS); coarse, large receptive fields
    higher_area = np.where(v < -0.33, 3, np.where(v > 0.33, 5, 4))
    area = np.where(early, area, higher_area)
    ecc = np.where(early, ecc, 0.25 + 0.5 * rng.random(len(u)))
    angle = np.where(early, angle, rng.uniform(-80, 80, len(u)))
    contra = np.where(hemi == 0, 1.0, -1.0)  # left hemisphere sees the right visual field
    rad = np.deg2rad(angle)
    prf_x = contra * ecc * np.cos(rad)
    prf_y = ecc * np.sin(rad)
    size_gain = np.array([1.0, 1.4, 1.9, 0, 0, 0])[area]
    prf_size = np.where(early, (0.04 + 0.12 * ecc) * size_gain, 0.45 + 0.3 * rng.random(len(u)))
    polar = np.rad2deg(np.arctan2(prf_y, prf_x))
    return VisualCortex(hemi=hemi, vertex=vertex, area=area.astype(np.int8), u=u, v=v,
                        prf_x=prf_x.astype(np.float32), prf_y=prf_y.astype(np.float32),
                        prf_size=prf_size.astype(np.float32), eccentricity=np.hypot(prf_x, prf_y).astype(np.float32),
                        polar_angle=polar.astype(np.float32))


def to_surface(values: np.ndarray, hemi: np.ndarray, vertex: np.ndarray, fill: float = np.nan
               ) -> dict[str, np.ndarray]:
    """Scatter per-voxel values [V] onto full fsaverage5 hemispheres: ``{hemi: [10242]}``."""
    values = np.asarray(values, np.float32)
    out = {}
    for h, name in enumerate(HEMIS):
        arr = np.full(N_VERTICES, fill, np.float32)
        sel = hemi == h
        arr[vertex[sel]] = values[sel]
        out[name] = arr
    return out
