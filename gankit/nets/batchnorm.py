"""BatchNorm across processes and back: SyncBatchNorm for data-parallel training, plain
BatchNorm again in copies that one process runs (an EMA generator), and the differentiable
collectives they rest on (also used by the unrolled GAN's look-ahead). Used by the training engine; networks stay plain ``nn.BatchNorm``.
"""
from __future__ import annotations

from typing import Callable, List, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Σ over ranks, differentiable any number of times: the backward of a sum over ranks is
    the sum over ranks of the incoming gradients (each rank's loss depends on every rank's input)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)


def all_reduce_sum(x: Tensor) -> Tensor:
    """Differentiable Σ of ``x`` over ranks (``x`` itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllReduceSum.apply(x)


def mean_across_ranks(tensors: Sequence[Tensor]) -> List[Tensor]:
    """Differentiable mean over ranks of each tensor (identity in a single process). Its backward
    all-reduces the incoming gradients, so second-order paths (the unrolled GAN) stay exact."""
    tensors = list(tensors)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    world = dist.get_world_size()
    sizes = [t.numel() for t in tensors]
    flat = all_reduce_sum(torch.cat([t.reshape(-1) for t in tensors])) / world
    return [f.view_as(t) for f, t in zip(flat.split(sizes), tensors)]


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over all ranks.

    Same parameters and buffers as ``nn.BatchNorm{1,2,3}d`` (checkpoints are interchangeable).
    Mean and variance are computed in two passes, each one differentiable all-reduce of
    per-channel sums, so gradients (and double backward for R1) are exact on any backend —
    unlike ``torch.nn.SyncBatchNorm``, which needs a GPU. In eval mode, or in a single
    process, it is plain BatchNorm.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {x.dim()}D")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        C = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, C] + [1] * (x.dim() - 2)
        xf = x.float()
        local_n = torch.tensor([x.numel() / C], device=x.device)
        packed = all_reduce_sum(torch.cat([xf.sum(dims), local_n]))          # (C + 1,)
        count = packed[C].detach()
        mean = packed[:C] / count                                         # (C,)
        var = all_reduce_sum((xf - mean.view(shape)).pow(2).sum(dims)) / count  # biased, as BN normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * count / max(float(count) - 1, 1.0), m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def _swap_batchnorm(module: nn.Module, replace: Callable[[nn.Module], bool], cls: type) -> nn.Module:
    """Replace every BatchNorm layer for which ``replace(layer)`` holds by a ``cls`` with the same
    weights, buffers, state-dict keys, mode and device."""
    if replace(module):
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new.to(next(module.buffers()).device)
    for name, child in module.named_children():
        new_child = _swap_batchnorm(child, replace, cls)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d/3d`` in ``module`` by :class:`SyncBatchNorm`."""
    return _swap_batchnorm(module, lambda m: type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
                           SyncBatchNorm)


class LocalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Plain BatchNorm for any (N, C, ...) input: what a SyncBatchNorm becomes in a copy that only
    one process runs (the EMA generator), so re-estimating its statistics needs no collective."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {x.dim()}D")


def local_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every SyncBatchNorm (gankit's or torch's) in ``module`` by :class:`LocalBatchNorm`."""
    return _swap_batchnorm(module, lambda m: isinstance(m, (SyncBatchNorm, nn.SyncBatchNorm)), LocalBatchNorm)


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
