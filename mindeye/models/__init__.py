"""MindEye V1 model definitions (voxel->CLIP backbone, diffusion prior, low-level VAE pathway), sized by config
dataclasses whose defaults reproduce the released V1 subject-1 checkpoints' state_dict layouts."""
from .lowlevel import LowLevelConfig, Voxel2VAE, convert_v1_lowlevel_state_dict, to_v1_lowlevel_state_dict
from .prior import DiffusionPrior, NoiseSchedule, PriorConfig, PriorNetwork
from .voxel2clip import BrainNetwork, Voxel2ClipConfig

__all__ = [
    "BrainNetwork", "Voxel2ClipConfig",
    "DiffusionPrior", "NoiseSchedule", "PriorConfig", "PriorNetwork",
    "LowLevelConfig", "Voxel2VAE", "convert_v1_lowlevel_state_dict", "to_v1_lowlevel_state_dict",
]
