"""pfd_ref: Privileged Features Distillation (Xu et al., KDD 2020), reference implementation."""

from pfd_ref.backend import get_backend, set_backend
from pfd_ref.distill import METHODS, DistillConfig, ModelSizes
from pfd_ref.losses import hard_loss, soft_loss
from pfd_ref.models import MLPRanker, TwoTower, build_model
from pfd_ref.train import TrainConfig, train

__all__ = ["DistillConfig", "METHODS", "MLPRanker", "ModelSizes", "TrainConfig", "TwoTower", "build_model",
           "get_backend", "hard_loss", "set_backend", "soft_loss", "train"]
