"""The recognition net: a small UNet from a TEM frame to the phase-field fields ``(c_v, c_i, eta)``.

Input frames ``[B, H, W]`` (or ``[B, 1, H, W]``) of raw intensities and frame times ``[B]``; output
``[B, 3, H, W]``: channel 0 the vacancy site fraction ``c_v`` (sigmoid head in ``c_v_range``), channel 1
the interstitial site fraction ``c_i`` (log-scale head, ``10**`` of a sigmoid in ``log_c_i_range``),
channel 2 the void order parameter ``eta`` in [0, 1]. A time embedding is appended at the bottleneck.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from neuradiff.core.checks import check_memory
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path
from neuradiff.nets.levels import normalise_frames

FORMAT = "neuradiff-recognition-net"
VERSION = 1
EMBEDDINGS = ("sinusoidal", "per-frame", "none")
NORMS = ("group", "batch", "none")
N_FREQUENCIES = 16  # sinusoidal embedding: 16 sin + 16 cos features
#: Frames whose shorter side has at least this many pixels are recognised at stride 2 unless a config says otherwise.
LARGE_FRAME_PX = 256
# Initial head outputs: the fields of a matrix with no void (c_v ~0.12, c_i ~1e-4, eta 0.5).
_INIT_C_V = 0.12
_INIT_LOG_C_I = -4.0


@dataclass(frozen=True)
class NetConfig:
    """Architecture of a :class:`RecognitionNet`.

    Parameters
    ----------
    width : channels of the first level; each deeper level doubles them.
    depth : number of 2× down-sampling levels (frame sides are padded to a multiple of ``2**depth``).
    embedding : ``"sinusoidal"`` (sin/cos of the frame time through a small MLP, default), ``"per-frame"``
        (a learned code per frame index, the paper's choice; cannot generalise to unseen frames) or ``"none"``.
    emb_channels : channels of the embedding appended at the bottleneck.
    n_frames : number of frame codes, only for ``"per-frame"``.
    emb_grid : side ``b`` of the ``b×b`` grid of a per-frame code (resized bilinearly to the bottleneck grid
        when the frame size gives another one); only for ``"per-frame"``.
    norm : ``"group"`` (GroupNorm, independent of batch size), ``"batch"``, or ``"none"`` (no normalisation layer;
        the convolutions have a bias: a net whose batch norms were folded into them, e.g. the generalist as a
        fit's starting point).
    stride : 1, or 2 to work on a grid twice as coarse as the frame: each 2×2 block of pixels enters as 4
        channels and each output pixel comes from its own channel of the coarse grid (pixel unshuffle /
        shuffle, nothing is interpolated); about 4× less compute per frame, for fast tracking of large frames.
    c_v_range : ``(lo, hi)`` of the ``c_v`` head (site fraction; the default reaches above 1 so that the value
        inside a void, 1, is not the sigmoid's asymptote — the conservative model lets it exceed 1 slightly).
    log_c_i_range : ``(lo, hi)`` of ``log10 c_i``.
    refine : channels of a full-resolution refinement of ``eta`` after the head (0: none): two 3×3 convolutions
        over the normalised frame and the head's ``eta`` logit, added to that logit (its last convolution starts
        at zero, so a net gains it without changing its output). With ``stride`` 2 it gives each void's outline
        the frame's own pixels back, for voids of a few pixels. ``c_v`` and ``c_i`` are left as the head gives them.
    level : each whole frame's grey levels are mapped by its own 1st and 99th percentiles to -1 and +1
        (:func:`~neuradiff.nets.levels.normalise_frame`) before the net's ``input_mean``/``input_std``, so that a
        recording that brightens or darkens over minutes reaches the net at one brightness; applied by
        :meth:`RecognitionNet.prepare` to whole frames, before any cropping or tiling.
    """

    width: int = 16
    depth: int = 3
    embedding: str = "sinusoidal"
    emb_channels: int = 8
    n_frames: int = 0
    emb_grid: int = 8
    norm: str = "group"
    stride: int = 1
    c_v_range: tuple[float, float] = (0.0, 1.5)
    log_c_i_range: tuple[float, float] = (-12.0, -2.0)
    refine: int = 0
    level: bool = False

    def __post_init__(self):
        if not isinstance(self.level, bool):
            raise NeuradiffError(f"NetConfig.level must be true or false, got {self.level!r}")
        for name in ("width", "depth", "emb_channels", "n_frames", "emb_grid", "stride", "refine"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise NeuradiffError(f"NetConfig.{name} must be an integer, got {value!r}")
        if self.width < 1 or self.depth < 1:
            raise NeuradiffError(f"NetConfig needs width >= 1 and depth >= 1, got {self.width} and {self.depth}")
        if self.refine < 0:
            raise NeuradiffError(f"NetConfig.refine must be >= 0, got {self.refine}")
        if self.embedding not in EMBEDDINGS:
            raise NeuradiffError(f"NetConfig.embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.embedding != "none" and self.emb_channels < 1:
            raise NeuradiffError(f"NetConfig.emb_channels must be >= 1, got {self.emb_channels}")
        if self.embedding == "per-frame" and (self.n_frames < 1 or self.emb_grid < 1):
            raise NeuradiffError(
                "NetConfig with embedding 'per-frame' needs n_frames >= 1 and emb_grid >= 1, "
                f"got {self.n_frames} and {self.emb_grid}"
            )
        if self.stride not in (1, 2):
            raise NeuradiffError(f"NetConfig.stride must be 1 or 2, got {self.stride}")
        if self.norm not in NORMS:
            raise NeuradiffError(f"NetConfig.norm must be one of {NORMS}, got {self.norm!r}")
        for name in ("c_v_range", "log_c_i_range"):
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise NeuradiffError(f"NetConfig.{name} must be two numbers (lo, hi), got {value!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise NeuradiffError(f"NetConfig.{name} needs finite lo < hi, got {value!r}")
            object.__setattr__(self, name, (lo, hi))
        check_memory(
            "this recognition net",
            16.0 * self.approx_parameters(),
            f"width {self.width}, depth {self.depth}: about {self.approx_parameters():.3g} weights",
        )

    def approx_parameters(self) -> float:
        """An upper estimate of the number of weights (two 3×3 convolutions per level down and up), computed
        without building the net: ``45 · width² · (4^(depth+1) − 1) / 3 + 28 · refine``.

        Examples
        --------
        >>> NetConfig().approx_parameters() < 2e6
        True
        """
        return 45.0 * float(self.width) ** 2 * (4.0 ** (self.depth + 1) - 1.0) / 3.0 + 28.0 * self.refine

    def training_bytes(self, batch: int, height: int, width: int) -> float:
        """An upper estimate of the memory (bytes) training on ``batch`` frames of ``height × width`` px takes:
        weights, gradients and two Adam moments, plus the activations kept for the backward pass."""
        side = 2**self.depth
        padded = float(-(-height // side) * side) * float(-(-width // side) * side)
        return 16.0 * self.approx_parameters() + 80.0 * batch * padded * (self.width + self.refine)

    def to_dict(self) -> dict:
        """Plain dict (numbers, strings, lists) for saving."""
        d = asdict(self)
        for name in ("refine", "level"):  # files of nets without them read as before
            if not d[name]:
                del d[name]
        d["c_v_range"] = list(self.c_v_range)
        d["log_c_i_range"] = list(self.log_c_i_range)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> NetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`NeuradiffError`."""
        if not isinstance(d, dict):
            raise NeuradiffError(f"a net config must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise NeuradiffError(f"unknown net config keys: {', '.join(map(str, unknown))}")
        d = dict(d)
        for name in ("c_v_range", "log_c_i_range"):
            if name in d and isinstance(d[name], list):
                d[name] = tuple(d[name])
        return cls(**d)


def default_stride(height: int, width: int) -> int:
    """:attr:`NetConfig.stride` for frames of ``height × width`` px when no config sets it: 2 from
    :data:`LARGE_FRAME_PX` px a side (camera-size frames, tracked about 4× faster), else 1."""
    return 2 if min(height, width) >= LARGE_FRAME_PX else 1


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":  # the convolutions carry a bias instead (e.g. batch norms folded into them)
        return nn.Identity()
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class _DoubleConv(nn.Sequential):
    """(conv 3×3 → norm → ReLU) × 2."""

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=norm == "none"),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
        )


class SinusoidalEmbedding(nn.Module):
    omega: Tensor

    """Time ``[B]`` → ``[B, out_channels]``: 16 sin + 16 cos of ``t·ω`` (ω geometric from 1 to 1/1000 per
    time unit), then Linear 32→32, SiLU, Linear 32→out_channels."""

    def __init__(self, out_channels: int):
        super().__init__()
        omega = torch.exp(torch.linspace(0.0, -math.log(1000.0), N_FREQUENCIES))
        self.register_buffer("omega", omega, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * N_FREQUENCIES, 32), nn.SiLU(), nn.Linear(32, out_channels))

    def forward(self, times: Tensor) -> Tensor:
        phase = times.to(self.omega.dtype)[:, None] * self.omega
        return self.mlp(torch.cat([torch.sin(phase), torch.cos(phase)], dim=1))


def _pixel_shuffle(z: Tensor, r: int) -> Tensor:
    """``F.pixel_shuffle(z, r)`` (``[B, C r², H, W]`` → ``[B, C, H r, W r]``, the same values) as one reshape and
    permute: on a channels-last tensor about 4× faster than the library call."""
    b, c, h, w = z.shape
    return z.reshape(b, c // (r * r), r, r, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // (r * r), h * r, w * r)


def fuse_batch_norm(net: RecognitionNet) -> RecognitionNet:
    """A copy of ``net`` for inference with each batch norm folded into the convolution before it (the same
    outputs to float round-off, one pass fewer per layer); ``net`` itself is left as it is."""
    fused = copy.deepcopy(net).eval()
    for module in fused.modules():
        if isinstance(module, _DoubleConv):
            for i in (0, 3):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
    return fused


def _logit(p: float) -> float:
    p = min(max(p, 0.01), 0.99)
    return math.log(p / (1.0 - p))


class RecognitionNet(nn.Module):
    """UNet from TEM frames to ``(c_v, c_i, eta)``, with a time embedding at the bottleneck.

    Parameters
    ----------
    config : architecture.
    input_mean, input_std : mean and standard deviation of the raw frame intensities (e.g. measured on
        the training video); frames are normalised as ``(x - mean) / std`` inside :meth:`forward`. Stored as
        buffers, so they travel with the ``state_dict``.
    """

    input_mean: Tensor
    input_std: Tensor

    def __init__(self, config: NetConfig = NetConfig(), *, input_mean: float = 0.0, input_std: float = 1.0):
        super().__init__()
        if not isinstance(config, NetConfig):
            raise NeuradiffError(f"config must be a NetConfig, got {type(config).__name__}")
        input_mean, input_std = float(input_mean), float(input_std)
        if not (math.isfinite(input_mean) and math.isfinite(input_std) and input_std > 0):
            raise NeuradiffError(f"input normalisation needs finite mean and std > 0, got {input_mean}, {input_std}")
        self.config = config
        self.register_buffer("input_mean", torch.tensor(input_mean))
        self.register_buffer("input_std", torch.tensor(input_std))

        chans = [config.width * 2**k for k in range(config.depth + 1)]
        self.down = nn.ModuleList()
        c_prev = config.stride**2
        for c in chans[:-1]:
            self.down.append(_DoubleConv(c_prev, c, config.norm))
            c_prev = c
        emb = 0 if config.embedding == "none" else config.emb_channels
        self.bottleneck = _DoubleConv(chans[-2] + emb, chans[-1], config.norm)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for k in range(config.depth - 1, -1, -1):
            self.up.append(nn.ConvTranspose2d(chans[k + 1], chans[k], 2, stride=2))
            self.up_conv.append(_DoubleConv(2 * chans[k], chans[k], config.norm))
        self.head = nn.Conv2d(chans[0], 3 * config.stride**2, 1)
        self.refine: nn.Sequential | None = None
        if config.refine:
            self.refine = nn.Sequential(
                nn.Conv2d(2, config.refine, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(config.refine, 1, 3, padding=1),
            )

        if config.embedding == "sinusoidal":
            self.time_embedding = SinusoidalEmbedding(config.emb_channels)
        elif config.embedding == "per-frame":
            self.time_embedding = nn.Embedding(config.n_frames, config.emb_channels * config.emb_grid**2)
        else:
            self.time_embedding = None

        # Start from a void-free matrix: c_v ~0.12, c_i ~1e-4 (clamped inside the ranges), eta ~0.5.
        with torch.no_grad():
            assert self.head.bias is not None
            per_field = self.head.bias.view(3, config.stride**2)  # pixel-shuffle order: field-major
            lo, hi = config.c_v_range
            per_field[0] = _logit((_INIT_C_V - lo) / (hi - lo))
            lo, hi = config.log_c_i_range
            per_field[1] = _logit((_INIT_LOG_C_I - lo) / (hi - lo))
            per_field[2] = 0.0
            if self.refine is not None:  # starts as no change to the head's logits
                last = self.refine[2]
                assert isinstance(last, nn.Conv2d) and last.bias is not None
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
        # channels-last conv weights: ~10-25 % faster convolutions on CPU (oneDNN); .to(device) keeps it.
        self.to(memory_format=torch.channels_last)  # pyright: ignore[reportCallIssue] - a valid Module.to overload

    # ------------------------------------------------------------------ internals

    def _embedding(self, times: Tensor, batch: int, grid: tuple[int, int]) -> Tensor | None:
        """``[B, emb_channels, h, w]`` embedding on the bottleneck grid, or ``None``."""
        cfg = self.config
        if self.time_embedding is None:
            return None
        if cfg.embedding == "sinusoidal":
            e = self.time_embedding(times)
            return e[:, :, None, None].expand(-1, -1, *grid)
        if times.is_floating_point() and not bool(torch.all(times == torch.round(times))):
            raise ValueError("per-frame embedding needs integer frame indices as times")
        idx = times.round().long() if times.is_floating_point() else times.long()
        if bool(torch.any((idx < 0) | (idx >= cfg.n_frames))):
            bad = idx[(idx < 0) | (idx >= cfg.n_frames)][0].item()
            raise ValueError(f"frame index {bad} out of range for a per-frame embedding of {cfg.n_frames} frames")
        e = self.time_embedding(idx).view(batch, cfg.emb_channels, cfg.emb_grid, cfg.emb_grid)
        if tuple(grid) != (cfg.emb_grid, cfg.emb_grid):
            e = F.interpolate(e, size=grid, mode="bilinear", align_corners=False)
        return e

    def _check(self, frames: Tensor, times) -> tuple[Tensor, Tensor]:
        if not isinstance(frames, Tensor):
            raise ValueError(f"frames must be a tensor, got {type(frames).__name__}")
        if frames.dim() == 4 and frames.shape[1] == 1:
            frames = frames[:, 0]
        if frames.dim() != 3:
            raise ValueError(f"frames must be [B, H, W] or [B, 1, H, W], got shape {tuple(frames.shape)}")
        dtype = self.input_mean.dtype
        frames = frames.to(dtype)
        times = torch.as_tensor(times, device=frames.device)
        if times.dim() == 0:
            times = times.expand(frames.shape[0])
        if times.shape != (frames.shape[0],):
            raise ValueError(f"times must be [B] = [{frames.shape[0]}], got shape {tuple(times.shape)}")
        if times.is_floating_point():
            times = times.to(dtype)
        return frames, times

    def prepare(self, frames: np.ndarray, *, first_index: int = 0) -> np.ndarray:
        """Whole frames ``[T, H, W]`` (raw intensities, any real dtype) as this net reads them: float32, each frame
        normalised by its own grey levels when :attr:`NetConfig.level` (``first_index`` numbers the frames in
        error messages), else as they are.

        Examples
        --------
        >>> import numpy as np
        >>> net = RecognitionNet(NetConfig(width=4, depth=1, level=True))
        >>> x = np.arange(2 * 64, dtype=np.uint16).reshape(2, 8, 8)  # frame 1: frame 0 made brighter
        >>> y = net.prepare(x)
        >>> y.dtype, bool(np.allclose(y[0], y[1]))
        (dtype('float32'), True)
        """
        if self.config.level:
            return normalise_frames(frames, first_index=first_index)
        return np.ascontiguousarray(frames, dtype=np.float32)

    def logits(self, frames: Tensor, times: Tensor) -> Tensor:
        """Pre-activation head output ``[B, 3, H, W]`` (same inputs as :meth:`forward`)."""
        frames, times = self._check(frames, times)
        b, h, w = frames.shape
        stride = self.config.stride
        m = stride * 2**self.config.depth
        ph, pw = (-h) % m, (-w) % m
        x = ((frames - self.input_mean) / self.input_std)[:, None]
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
        frame = x
        if stride > 1:
            x = F.pixel_unshuffle(x, stride)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        e = self._embedding(times, b, (x.shape[-2], x.shape[-1]))
        if e is not None:
            x = torch.cat([x, e.to(x.dtype)], dim=1)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = conv(torch.cat([up(x), skip], dim=1))
        z = self.head(x)
        if stride > 1:
            z = _pixel_shuffle(z, stride)
        if self.refine is not None:
            eta = z[:, 2:3]
            eta = eta + self.refine(torch.cat([frame, eta], dim=1).contiguous(memory_format=torch.channels_last))
            z = torch.cat([z[:, :2], eta], dim=1)
        if ph or pw:
            z = z[:, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        return z

    # ------------------------------------------------------------------ public

    def fields(self, z: Tensor) -> Tensor:
        """Map head logits ``[B, 3, H, W]`` to ``(c_v, c_i, eta)`` ``[B, 3, H, W]`` (site fractions, eta in [0, 1])."""
        lo_v, hi_v = self.config.c_v_range
        lo_i, hi_i = self.config.log_c_i_range
        s = torch.sigmoid(z)
        c_v = lo_v + (hi_v - lo_v) * s[:, 0]
        c_i = torch.pow(10.0, lo_i + (hi_i - lo_i) * s[:, 1])
        return torch.stack([c_v, c_i, s[:, 2]], dim=1)

    def forward(self, frames: Tensor, times: Tensor) -> Tensor:
        """Fields from frames.

        Parameters
        ----------
        frames : ``[B, H, W]`` or ``[B, 1, H, W]`` raw intensities (any scale, any H, W).
        times : ``[B]`` frame times (``"sinusoidal"``: frame-index units or any consistent unit;
            ``"per-frame"``: integer frame indices in ``[0, n_frames)``); a scalar is broadcast.

        Returns
        -------
        ``[B, 3, H, W]``: ``c_v`` in ``c_v_range``, ``c_i`` in ``10**log_c_i_range``, ``eta`` in [0, 1].
        """
        return self.fields(self.logits(frames, times))

    def eta_logits(self, frames: Tensor, times: Tensor) -> Tensor:
        """Pre-sigmoid ``eta`` ``[B, H, W]`` (for :func:`~neuradiff.nets.losses.annotation_loss`)."""
        return self.logits(frames, times)[:, 2]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_net(net: RecognitionNet, path) -> Path:
    """Write ``net`` (config, state dict incl. input normalisation) to ``path`` atomically; returns the path."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": net.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_net(path, map_location="cpu") -> RecognitionNet:
    """Read a net written by :func:`save_net`; one-line :class:`NeuradiffError` if it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise NeuradiffError(f"{path}: no such recognition-net file")
    try:
        with warnings.catch_warnings():  # the weights-only unpickler warns about foreign pickles
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch.load fails in many ways (RuntimeError, UnpicklingError, OSError, EOFError...)
        raise NeuradiffError(
            f"{path}: not a readable recognition-net file (truncated, corrupt or not written "
            f"by save_net; {type(exc).__name__})"
        ) from None
    if not isinstance(payload, dict):
        raise NeuradiffError(f"{path}: not a {FORMAT} file (holds a {type(payload).__name__}, not a dict)")
    if payload.get("format") != FORMAT:
        raise NeuradiffError(f"{path}: not a {FORMAT} file (format {payload.get('format')!r})")
    if payload.get("version") != VERSION:
        raise NeuradiffError(
            f"{path}: {FORMAT} version {payload.get('version')!r} is not supported "
            f"(this neuradiff reads version {VERSION})"
        )
    try:
        config = NetConfig.from_dict(payload.get("config"))
    except (NeuradiffError, TypeError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise NeuradiffError(f"{path}: bad net config ({reason})") from None
    net = RecognitionNet(config)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise NeuradiffError(f"{path}: no state dict")
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise NeuradiffError(f"{path}: state dict does not match the config ({detail[:160]})") from None
    if isinstance(map_location, (str, torch.device)):
        net.to(map_location)
    return net


__all__ = [
    "FORMAT",
    "VERSION",
    "NetConfig",
    "RecognitionNet",
    "SinusoidalEmbedding",
    "count_parameters",
    "load_net",
    "save_net",
]
