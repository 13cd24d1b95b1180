"""Device choice: `auto` follows GANKIT_DEVICE, which the test suite sets to cpu (tests/conftest.py)."""
import os

import pytest
import torch

from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.train.loop import Trainer
from gankit.utils import DEVICE_ENV, resolve_device


def test_auto_follows_gankit_device_and_a_bad_value_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv(DEVICE_ENV)
    assert resolve_device("auto") == torch.device("cuda")  # unset: CUDA when there is one, as before
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "gpu0")
    assert resolve_device("cpu") == torch.device("cpu")  # only `auto` reads it
    with pytest.raises(ConfigError) as e:
        resolve_device("auto")
    msg = str(e.value)
    assert "\n" not in msg and "GANKIT_DEVICE='gpu0'" in msg and "cpu, cuda or cuda:N" in msg


def test_the_suite_runs_on_the_cpu_even_where_cuda_is_available(monkeypatch):
    assert DEVICE_ENV in os.environ  # conftest sets it (cpu) unless the caller chose a device
    monkeypatch.setenv(DEVICE_ENV, "cpu")  # the default, whatever the caller chose for this run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cpu")
    tr = Trainer(load_config("gan-ring8", ["train.steps=1", "data.size=64", "train.batch_size=16"]))
    assert tr.device == torch.device("cpu")


def test_a_cuda_device_that_is_not_here_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for name, setting in (("cuda", "train.device"), ("cuda:1", "device")):
        with pytest.raises(ConfigError) as e:
            resolve_device(name, setting)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{setting}={name}: no such CUDA device here (0 visible)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"cuda:1: no such CUDA device here \(1 visible\)"):
        resolve_device("cuda:1")
    monkeypatch.setenv(DEVICE_ENV, "cuda:3")
    with pytest.raises(ConfigError, match=r"GANKIT_DEVICE='cuda:3': no such CUDA device here"):
        resolve_device("auto")


def test_bf16_on_a_gpu_without_native_bf16_is_refused_in_one_line(monkeypatch):
    from gankit.train.loop import check_bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    with pytest.raises(ConfigError) as e:
        check_bf16("bf16", torch.device("cuda"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("train.precision=bf16: this GPU (Tesla V100-SXM2-16GB) has no native bf16")
    check_bf16("fp32", torch.device("cuda"))  # what auto picks there
    check_bf16("bf16", torch.device("cpu"))   # the CPU's bf16 is its own question
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    check_bf16("bf16", torch.device("cuda"))


def test_the_bench_baseline_draws_the_samplers_batches_on_the_datas_device():
    """The plain step indexes data on a GPU with indices already there (one permutation copied per
    epoch), as gankit's step does; the batches are the sampler's (``meta`` stands in for a GPU)."""
    from gankit.bench import _indices
    from gankit.data import EpochSampler

    host = EpochSampler(10, 4, seed=3)
    on_cpu = _indices(EpochSampler(10, 4, seed=3), torch.device("cpu"))
    for _ in range(7):  # across three epochs (2 batches each)
        assert torch.equal(on_cpu(), host.next())
    on_meta = _indices(EpochSampler(10, 4, seed=3, rank=1, world_size=2), torch.device("meta"))
    idx = on_meta()
    assert idx.device.type == "meta" and idx.shape == (2,)
