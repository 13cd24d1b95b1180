"""Self-attention over feature-map positions (SAGAN, Zhang et al. 2019, Sec. 3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """o = x + γ·W_o(softmax(f(x)ᵀ g(x)) h(x)), γ initialised to 0 so a new block starts as identity.

    Channel sizes follow the reference code (brain-research/self-attention-gan): query and
    key C/8, value C/2, and keys/values max-pooled 2×2 (4× fewer positions to attend to).
    (B, C, H, W) -> (B, C, H, W); H and W must be even.
    """

    def __init__(self, channels: int, spectral: bool = False):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        self.c_qk, self.c_v = max(1, channels // 8), max(1, channels // 2)
        self.query = sn(nn.Conv2d(channels, self.c_qk, 1, bias=False))
        self.key = sn(nn.Conv2d(channels, self.c_qk, 1, bias=False))
        self.value = sn(nn.Conv2d(channels, self.c_v, 1, bias=False))
        self.out = sn(nn.Conv2d(self.c_v, channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2)                         # (B, C/8, HW)
        k = F.max_pool2d(self.key(x), 2).flatten(2)          # (B, C/8, HW/4)
        v = F.max_pool2d(self.value(x), 2).flatten(2)        # (B, C/2, HW/4)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, HW, HW/4): each position's weights
        o = (v @ attn.transpose(1, 2)).view(b, self.c_v, h, w)
        return x + self.gamma * self.out(o)
