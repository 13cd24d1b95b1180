import os

# Tests check exact numbers and compare with CPU tensors: run them on the CPU on every machine, and
# so do the processes they start (CLI runs, torchrun workers, which then use gloo), which inherit
# the environment. `GANKIT_DEVICE=cuda pytest` pushes them onto a GPU on purpose; tests of the GPU
# paths carry the `gpu` marker and ask for CUDA themselves. Set before gankit is imported.
os.environ.setdefault("GANKIT_DEVICE", "cpu")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests run on 2 shared cores, in 2 pytest-xdist workers (pyproject's addopts): one PyTorch thread each,
# so the workers never oversubscribe the cores; 2 threads when the suite runs in one process (-n 0).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(int(os.environ.get("GANKIT_TEST_THREADS", str(max(1, 2 // WORKERS)))))

NO_GPU = "needs a CUDA device (none here)"


# Tests that run the speech synthesisers espeak-ng and flite (Debian packages, installed by
# scripts/setup.sh) are marked `speech`, so a machine that cannot have them (the lent GPU image) can
# leave them out by name, `-m "not speech"`, instead of counting them as failures: every test that
# uses one of these fixtures (directly or through another), and those marked by hand.
SPEECH_FIXTURES = {"corpus", "tiny_speech_corpus", "seven", "words"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SPEECH_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.speech)
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.skip(reason=NO_GPU))


def pytest_terminal_summary(terminalreporter):
    """One line saying whether the GPU paths were checked: `GPU tests: 5 ran on NVIDIA H200`."""
    outcome = {}  # nodeid -> passed | failed | skipped, over the setup, call and teardown reports
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, "when", None) and "gpu" in r.keywords:  # a test report (not a warning) of a gpu test
                was = outcome.get(r.nodeid, "passed")
                outcome[r.nodeid] = ("failed" if r.failed or was == "failed" else
                                     "skipped" if r.skipped or was == "skipped" else "passed")
    if not outcome:
        return
    skipped = sum(o == "skipped" for o in outcome.values())
    ran = len(outcome) - skipped
    failed = sum(o == "failed" for o in outcome.values())
    if torch.cuda.is_available() and ran:
        where = f"on {torch.cuda.get_device_name()}" + (f" ({failed} failed)" if failed else "")
        line = f"GPU tests: {ran} ran {where}" + (f", {skipped} skipped" if skipped else "")
    else:
        line = f"GPU tests: {ran} ran, {skipped} skipped" + ("" if torch.cuda.is_available() else " (no CUDA device)")
    terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Each test session gets its own gankit cache unless GANKIT_CACHE is set by the caller. Session
    scope: it is set before any module fixture runs, so one that caches features or trains a domain
    network writes them there, never into the user's ~/.cache/gankit."""
    with pytest.MonkeyPatch.context() as mp:
        if "GANKIT_CACHE" not in os.environ:
            mp.setenv("GANKIT_CACHE", str(tmp_path_factory.getbasetemp() / "gankit-cache"))
        yield


@pytest.fixture(scope="session")
def tiny_overrides():
    """The tiny runs the style-tool tests train (test_projection, test_directions, test_style_outputs):
    ``tiny`` (8x8 digits at 16 px, 4 steps, checkpointed), plus ``style`` (a StyleGAN2 of a 16-d W)
    or ``dcgan`` (widths 8)."""
    return {"tiny": ["data.name=digits", "data.resolution=16", "data.limit=64", "train.steps=4",
                     "train.batch_size=8", "train.log_every=2", "train.checkpoint_every=4", "train.sample_every=4",
                     "model.z_dim=16"],
            "style": ["model.arch=stylegan2", "model.g={w_dim: 16, mapping_layers: 2, width: 64, max_width: 16}",
                      "model.d={width: 64, max_width: 16}"],
            "dcgan": ["model.arch=dcgan", "model.g.width=8", "model.d.width=8"]}


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: a projection or an edit is hundreds of tiny sequential steps, and on
    shared cores a second thread only waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
