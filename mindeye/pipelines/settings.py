"""Reconstruction settings and their limits, torch-free so the app can build its sliders without loading torch."""
from __future__ import annotations

import numpy as np

from ..data.errors import DataError

MAX_SAMPLES = 16  # V1's recons_per_sample ceiling per trial
MAX_AVERAGE = 16  # prior draws averaged into one sample's tokens (PriorHidden.average; V1: 1)
# V1's reconstruction settings: img2img strength .85, 20 UniPC steps, guidance 3.5. A hidden model may carry its
# own strength, chosen on val by bench/recon_strength.py (Engine.default_strength reads it); these are the rest.
V1_STRENGTH = 0.85
V1_STEPS = 20
V1_GUIDANCE = 3.5


def check_settings(strength: float, n: int, steps: int, guidance: float) -> None:
    """Bad settings get a message naming what is allowed (the UI and the CLIs both call this)."""
    if not (isinstance(strength, (int, float)) and 0.0 <= float(strength) <= 1.0):
        raise DataError(f"img2img strength must be in [0, 1] (1 = no img2img), got {strength!r}")
    if not (isinstance(n, (int, np.integer)) and 1 <= int(n) <= MAX_SAMPLES):
        raise DataError(f"samples per trial must be an integer from 1 to {MAX_SAMPLES}, got {n!r}")
    if not (isinstance(steps, (int, np.integer)) and 1 <= int(steps) <= 200):
        raise DataError(f"denoising steps must be an integer from 1 to 200, got {steps!r}")
    if not (isinstance(guidance, (int, float)) and 1.0 <= float(guidance) <= 20.0):
        raise DataError(f"guidance scale must be in [1, 20], got {guidance!r}")
