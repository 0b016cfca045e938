"""Training: the fit settings, a video prepared for training, the shared recognition losses and the one
training loop (phases, validation, checkpoints) every method runs."""

from neuradiff.training.config import INITIAL_GUESS, FitConfig
from neuradiff.training.crops import Window, cut_batch, resolve_crop
from neuradiff.training.crops import interior as crop_interior
from neuradiff.training.data import TrainingData, annotated_pairs, split_frames
from neuradiff.training.distributed import Processes, fraction, share
from neuradiff.training.loop import Objective, Phase, Progress, TrainingLoop, TrainState
from neuradiff.training.recognition import RecognitionTraining, augment, augmentation, batch_rng

__all__ = [
    "INITIAL_GUESS",
    "FitConfig",
    "Objective",
    "Phase",
    "Processes",
    "Progress",
    "RecognitionTraining",
    "TrainState",
    "TrainingData",
    "TrainingLoop",
    "Window",
    "annotated_pairs",
    "augment",
    "augmentation",
    "batch_rng",
    "crop_interior",
    "cut_batch",
    "fraction",
    "resolve_crop",
    "share",
    "split_frames",
]
