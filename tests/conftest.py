import os

import pytest
import torch

# Tests run on 2 shared cores: keep PyTorch from oversubscribing them.
torch.set_num_threads(int(os.environ.get("GANKIT_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own gankit cache unless GANKIT_CACHE is set by the caller."""
    if "GANKIT_CACHE" not in os.environ:
        monkeypatch.setenv("GANKIT_CACHE", str(tmp_path_factory.getbasetemp() / "gankit-cache"))
