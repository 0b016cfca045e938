"""Small states and parameter tensors shared by the engine tests."""

import torch

from neuradiff.physics import VoidParameters
from neuradiff.physics.initial import void_disks


def smooth_void_state(n=12, radius=3.0, dtype=torch.float64, batch=1, c_v_void=0.9):
    """A smooth-rimmed void with c_v ≤ ``c_v_void`` (keeps 1 − c_v − c_i away from the log floor)."""
    s = void_disks((n, n), [(n / 2 - 0.3, n / 2 + 0.2, radius)], width=1.5, dtype=dtype)
    s = s.clone()
    s[:, 0] = 0.122 + (c_v_void - 0.122) * s[:, 2]
    s[:, 2] = 0.05 + 0.9 * s[:, 2]  # keep eta off the bounds
    # A generic (tie-free) interstitial field: min/upwind choices between cells are then unambiguous.
    y, x = torch.meshgrid(torch.arange(n, dtype=dtype), torch.arange(n, dtype=dtype), indexing="ij")
    s[:, 1] = 6.9e-4 * (1.0 + 0.3 * torch.sin(0.7 * x + 0.3) * torch.cos(0.5 * y + 0.1))
    return s.repeat(batch, 1, 1, 1)


def tensor_params(params=None, learn=None):
    """(VoidParameters with float64 leaf tensors for ``learn``, the list of leaves)."""
    params = params or VoidParameters()
    learn = learn or VoidParameters.default_learned()
    leaves = [torch.tensor(getattr(params, n), dtype=torch.float64, requires_grad=True) for n in learn]
    return params.replace(**dict(zip(learn, leaves))), leaves
