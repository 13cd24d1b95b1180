"""The FID InceptionV3 (TensorFlow's ``inception-2015-12-05`` graph as ported by pytorch-fid).

gankit never downloads it: the user supplies the weights file (``pt_inception-2015-12-05-*.pth``
as used by pytorch-fid / torch-fidelity, or the same state dict saved as safetensors) with
``--inception-weights PATH`` or ``$GANKIT_INCEPTION_WEIGHTS``. Module and state-dict names
follow torchvision's ``Inception3`` with pytorch-fid's ``FIDInceptionA/C/E_1/E_2`` blocks,
so that file loads as is. The ``.pth`` is read with ``torch.load(weights_only=True)``.

Preprocessing follows clean-fid (Parmar et al. 2022): quantize to uint8, resize each channel
to 299x299 with PIL's bicubic filter on float values, then scale [0, 255] -> [-1, 1].
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.base import to_uint8
from ..errors import GankitError, option
from .cache import sha256_file
from .extractor import FeatureExtractor

ENV_VAR = "GANKIT_INCEPTION_WEIGHTS"


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg3(x):
    # TensorFlow's average pool ignores the zero padding (pytorch-fid's patch).
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, cin, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """InceptionE; ``max_pool`` selects pytorch-fid's E_2 variant (the TF graph max-pools in Mixed_7c)."""

    def __init__(self, cin, max_pool: bool = False):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """Input (B, 3, 299, 299) in [-1, 1] -> pool3 features (B, 2048) and logits (B, 1008)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        f = x.mean(dim=(2, 3))  # (B, 2048): pytorch-fid's block 3 output
        return f, self.fc(f)


def read_state_dict(path: Path) -> dict:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise GankitError(f"{option('--inception-weights', path)}: no such file; give the pt_inception-2015-12-05 "
                          f"weights file (gankit never downloads it)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or non-weights files
        raise GankitError(f"{option('--inception-weights', path)}: not a readable weights file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict):
        raise GankitError(f"{option('--inception-weights', path)}: expected a state dict, found {type(state).__name__}")
    return state


def load_fid_inception(path: Path) -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` and load ``path`` into it, checking every name and shape."""
    state = read_state_dict(path)
    net = FIDInceptionV3()
    own = net.state_dict()
    # Files converted before BatchNorm counted batches lack num_batches_tracked; nothing else may be missing.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise GankitError(f"{option('--inception-weights', path)}: not the FID InceptionV3 state dict "
                          f"({len(missing)} keys missing, {len(unexpected)} unexpected; first {what})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise GankitError(f"{option('--inception-weights', path)}: {k} has shape {tuple(v.shape)}, "
                              f"expected {tuple(own[k].shape)}")
    net.load_state_dict(state, strict=False)
    return net.eval()


def clean_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """clean-fid's resize: (N, C, H, W) float [-1, 1] -> uint8 levels -> per-channel PIL bicubic
    on float32 -> (N, C, size, size) float in [0, 255] (not clipped, as clean-fid)."""
    from PIL import Image

    u8 = to_uint8(x).cpu().numpy()
    out = np.empty((u8.shape[0], u8.shape[1], size, size), dtype=np.float32)
    for i in range(u8.shape[0]):
        for c in range(u8.shape[1]):
            im = Image.fromarray(u8[i, c].astype(np.float32), mode="F")
            out[i, c] = np.asarray(im.resize((size, size), resample=Image.Resampling.BICUBIC))
    return torch.from_numpy(out)


class InceptionFeatures(FeatureExtractor):
    """pool3 features (2048-d) and 1008-way logits of the FID InceptionV3."""

    name = "inception-v3-fid"
    preprocessing = "quantize to 8 bit; grey -> RGB; PIL bicubic resize to 299x299 (clean-fid); [0,255] -> [-1,1]"
    num_classes = 1008

    def __init__(self, net: FIDInceptionV3, sha256: str, path: Path):
        self.net, self.sha256, self.path = net, sha256, path
        self.batch_size = 50

    @classmethod
    def from_file(cls, path: Optional[str | Path] = None) -> "InceptionFeatures":
        path = path or os.environ.get(ENV_VAR)
        if not path:
            raise GankitError(f"{option('--features', 'inception')} needs the FID Inception weights file: pass "
                              f"{option('--inception-weights')} "
                              f"PATH (pt_inception-2015-12-05-6726825d.pth) or set ${ENV_VAR}; gankit never downloads")
        path = Path(path).expanduser()
        net = load_fid_inception(path)
        return cls(net, sha256_file(path), path)

    def prepare(self, x):
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise GankitError(f"inception features need images (N, 1 or 3, H, W), got {tuple(x.shape)}")
        x = clean_resize(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x / 127.5 - 1

    def forward(self, x):
        return self.net(x)
