"""Running a recognition net over a video: frames in, fields (or eta alone) out, in batches."""

from __future__ import annotations

import numpy as np
import torch

from neuradiff.nets.unet import RecognitionNet


@torch.inference_mode()
def recognise(
    net: RecognitionNet, frames: np.ndarray, *, batch: int = 8, first_index: int = 0, eta_only: bool = False
) -> np.ndarray:
    """Fields of every frame, in batches, in inference mode.

    Parameters
    ----------
    net : RecognitionNet
    frames : ndarray, shape (T, H, W)
        Raw intensities (any dtype; prepared batch by batch by :meth:`RecognitionNet.prepare`).
    batch : int
        Frames per forward pass.
    first_index : int
        Frame index of ``frames[0]`` in its video (the time given to the net).
    eta_only : bool
        Return just eta (the tracking output; skips the c_v and c_i heads' mapping).

    Returns
    -------
    ndarray, float32, shape (T, 3, H, W) with (c_v, c_i, eta), or (T, H, W) with eta when ``eta_only``.

    Examples
    --------
    >>> import numpy as np
    >>> from neuradiff.nets import NetConfig, RecognitionNet
    >>> net = RecognitionNet(NetConfig(width=4, depth=1))
    >>> recognise(net, np.zeros((2, 16, 16), np.float32), eta_only=True).shape
    (2, 16, 16)
    """
    net.eval()
    device = net.input_mean.device
    out = []
    for i in range(0, frames.shape[0], batch):
        x = torch.from_numpy(net.prepare(frames[i : i + batch], first_index=first_index + i)).to(device)
        t = (torch.arange(i, i + x.shape[0], dtype=torch.float32) + first_index).to(device)
        y = torch.sigmoid(net.eta_logits(x, t)) if eta_only else net(x, t)
        out.append(y.cpu().numpy())
    if out:
        return np.concatenate(out)
    return np.zeros((0,) + (() if eta_only else (3,)) + frames.shape[1:], np.float32)
