"""The methods NeuraDiff is compared with, trained on the same video and annotations.

- :mod:`~neuradiff.baselines.supervised`: the recognition net trained on the annotations alone (tracking only);
- :mod:`~neuradiff.baselines.surrogate`: an autoregressive UNet that predicts the next eta map from the
  current one (a pure neural surrogate of the dynamics);
- :mod:`~neuradiff.baselines.physics_only`: differentiable physics without a recognition net: parameters
  fitted by simulating from one annotated frame to the next;
- :mod:`~neuradiff.baselines.residual`: a physics-informed (residual) fit: a recognition net and parameters
  such that the recognised fields satisfy the model's equations from frame to frame.
"""
