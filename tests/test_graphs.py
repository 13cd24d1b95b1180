"""Whole steps as CUDA graphs and batches drawn on the GPU (gankit/train/graphs.py).

The CPU tests check what can be checked without a GPU: batches drawn by device index are the
sampler's, the fallback says why in one line, runtime.json records the choice. The tests marked
``gpu`` run where a CUDA device is: a replayed step equals the eager step bit for bit, a graph run
resumes exactly, no step synchronises with the host, a capture that fails falls back to eager.
"""
import contextlib
import json
import types

import pytest
import torch

import gankit
from gankit.config import load_config
from gankit.data import EpochSampler
from gankit.train.distributed import ShardedNoise
import gankit.train.graphs as graphs_module
from gankit.train.graphs import WARMUP_STEPS, DeviceDraws, StepGraphs, why_not
from gankit.train.loop import Trainer

DCGAN_TINY = ["data.limit=512", "train.batch_size=64", "model.g.width=8", "model.d.width=8", "train.ema=0.99",
              "train.ema_rampup=0.05", "train.lr_schedule=linear", "train.lr_decay_start=0.0", "train.steps=40",
              "train.log_every=4", "train.checkpoint_every=1000", "train.sample_every=1000"]


class FakeGraph:
    """torch.cuda.CUDAGraph's stand-in (after the GPU audit's /tmp/audit_gpu/fakecuda.py): a capture
    runs the step's Python once, as a real one does (its kernels are recorded); ``replay`` runs no
    Python, as a real replay runs none. What must happen at every step has to happen on the host."""

    def __init__(self):
        self.replays = 0

    def register_generator_state(self, generator):
        pass

    def replay(self):
        self.replays += 1


@pytest.fixture
def fake_cuda(monkeypatch):
    """The CUDA pieces :class:`StepGraphs` touches, as CPU stand-ins, so its host-side logic runs in
    the CPU suite: :func:`graphs_on` gives a CPU trainer the StepGraphs a CUDA trainer holds."""
    class Stream:
        def wait_stream(self, other):
            pass

    for name, value in (("Stream", lambda *a, **k: Stream()), ("current_stream", lambda *a, **k: Stream()),
                        ("stream", lambda s: contextlib.nullcontext()), ("synchronize", lambda *a, **k: None),
                        ("get_sync_debug_mode", lambda: 0), ("set_sync_debug_mode", lambda mode: None),
                        ("CUDAGraph", FakeGraph), ("graph", lambda g, *a, **k: contextlib.nullcontext())):
        monkeypatch.setattr(torch.cuda, name, value)


def graphs_on(tr):
    """``tr`` (a CPU trainer) with the StepGraphs it would hold on a GPU where why_not says yes."""
    tr.cuda_graphs_off = None
    tr.graphs = StepGraphs(tr.device, [tr.noise.generator] if tr.noise is not None else [])
    return tr


def reported_syncs(monkeypatch, when=lambda key: True):
    """The sync check finds a host read in the last warm-up run of the sets of phases ``when`` picks
    (what PyTorch's sync debug mode reports of a step with ``.item()``)."""
    key = {}
    step = StepGraphs.step

    def remember(self, k, body, accumulate):
        key["now"] = k
        return step(self, k, body, accumulate)

    @contextlib.contextmanager
    def reads():
        yield ["called a synchronizing CUDA operation"] if when(key["now"]) else []

    monkeypatch.setattr(StepGraphs, "step", remember)
    monkeypatch.setattr(graphs_module, "_host_reads", reads)


@pytest.mark.parametrize("world_size", [1, 2])
def test_device_draws_are_the_samplers_batches_across_epochs_and_a_resume(world_size):
    n, batch = 10, 4  # 2 batches per epoch, 2 rows left over: epochs turn every other draw
    for rank in range(world_size):
        host = EpochSampler(n, batch, seed=5, rank=rank, world_size=world_size)
        twin = EpochSampler(n, batch, seed=5, rank=rank, world_size=world_size)
        draws = DeviceDraws(twin, torch.device("cpu"))
        for i in range(9):
            want = host.next()
            draws.advance(1)
            assert torch.equal(draws.next(), want), f"draw {i}"
        # Several draws per step (k D steps) that cross an epoch, then a resume from the state.
        resumed = EpochSampler(n, batch, seed=99, rank=rank, world_size=world_size)
        resumed.load_state_dict(twin.state_dict())
        again = DeviceDraws(resumed, torch.device("cpu"), draws_per_step=3)
        for _ in range(3):
            want = [host.next() for _ in range(3)]
            again.advance(3)
            assert all(torch.equal(again.next(), w) for w in want)


@pytest.mark.parametrize("n,batch,k", [(100, 64, 5), (10, 4, 4), (10, 4, 5), (12, 4, 7)])
@pytest.mark.parametrize("world_size", [1, 2])
def test_device_draws_are_the_samplers_when_one_step_spans_three_or_more_epochs(n, batch, k, world_size):
    """k D steps per step on data of few batches (100 images at batch 64 hold one: WGAN-GP's 5 D
    steps touch 5 epochs): a step's draws run through several epochs, and every one is the sampler's."""
    for rank in range(world_size):
        host = EpochSampler(n, batch, seed=5, rank=rank, world_size=world_size)
        draws = DeviceDraws(EpochSampler(n, batch, seed=5, rank=rank, world_size=world_size), torch.device("cpu"),
                            draws_per_step=k)
        for step in range(6):
            want = [host.next() for _ in range(k)]
            draws.advance(k)
            got = [draws.next() for _ in range(k)]
            assert all(torch.equal(g, w) for g, w in zip(got, want)), (step, [g.tolist() for g in got])
        with pytest.raises(ValueError, match="more than the"):
            draws.advance(k + 1)  # more than its slots were sized for: refused, never a wrong batch


def test_a_trainers_device_draws_are_its_samplers_with_k_d_steps_on_small_data():
    """WGAN-GP (5 D steps) on 100 images at batch 64: the batches a trainer draws on the device (as
    it does on a GPU, with CUDA graphs or without) are the host sampler's, none repeated."""
    sets = ["data.limit=100", "train.batch_size=64", "train.d_steps=5", "model.g.width=8", "model.d.width=8",
            "train.steps=10", "train.device=cpu"]

    def indices(device_draws):
        tr = Trainer(load_config("wgan-gp-fashion-mnist", sets))
        if device_draws:
            tr.draws = tr.device_draws()  # what a CUDA trainer holds
        got, batch = [], tr.data.batch
        tr.data.batch = lambda idx: (got.append(idx.clone()), batch(idx))[1]
        for _ in range(4):
            tr.train_step()
        return got

    host, device = indices(False), indices(True)
    assert len(host) == len(device) == 20
    assert all(torch.equal(a, b) for a, b in zip(host, device))


def test_cuda_graphs_on_without_a_gpu_trains_eagerly_and_says_why_once(capsys, tmp_path):
    run = gankit.train("gan-ring8", ["train.steps=6", "train.log_every=3", "train.cuda_graphs=on",
                                     "train.device=cpu"], out=tmp_path / "r", quiet=True)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "cuda_graphs" in ln]
    assert lines == ["note: train.cuda_graphs=on, but the device is cpu, not a CUDA GPU; training eagerly"]
    info = json.loads((tmp_path / "r" / "runtime.json").read_text())
    assert info["device"] == "cpu" and info["cuda_graphs"] is False
    assert info["cuda_graphs_off"] == "the device is cpu, not a CUDA GPU"
    assert info["precision"] == run.trainer.precision and info["precision_reason"]
    assert run.trainer.state.step == 6


def test_why_not_names_what_stops_a_capture(monkeypatch):
    """The reasons in the order a user meets them, on a stand-in for a CUDA trainer."""
    def trainer(**kw):
        base = dict(cfg=load_config("gan-ring8"), device=torch.device("cuda"), precision="fp32",
                    objective=types.SimpleNamespace(capturable=True), dist=types.SimpleNamespace(enabled=False),
                    optim_cfgs={"G": types.SimpleNamespace(name="adam"), "D": types.SimpleNamespace(name="adam")},
                    data=types.SimpleNamespace(device_indexable=True), phases=[],
                    sampler=types.SimpleNamespace(batches_per_epoch=10))
        base.update(kw)
        return types.SimpleNamespace(**base)

    assert why_not(trainer(), "off") == "train.cuda_graphs=off"
    assert "changes its work between steps" in why_not(trainer(objective=types.SimpleNamespace(capturable=False)), "on")
    assert "torchrun" in why_not(trainer(dist=types.SimpleNamespace(enabled=True)), "auto")
    assert "fp16" in why_not(trainer(precision="fp16"), "auto")
    assert "'rmsprop'" in why_not(trainer(optim_cfgs={"D": types.SimpleNamespace(name="rmsprop")}), "auto")
    assert "indexed on the GPU" in why_not(trainer(data=types.SimpleNamespace()), "auto")
    # A step that draws more batches than an epoch holds is captured too (DeviceDraws holds every
    # epoch one step touches).
    many = [types.SimpleNamespace(repeats=5, needs_data=True)]
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)  # a CPU build's has no register_generator_state
    assert why_not(trainer(phases=many, sampler=types.SimpleNamespace(batches_per_epoch=1)), "auto") is None


def test_replayed_statistics_fold_into_the_eager_sums_with_their_counts():
    """A graph's step logs d_loss twice (k = 2 D steps) and g_loss once; after 2 replays the sums
    and counts are those 2 eager steps would have accumulated, and the graph's totals restart."""
    from collections import defaultdict

    from gankit.train.graphs import StepGraphs, _Graph

    graphs = StepGraphs.__new__(StepGraphs)  # the bookkeeping alone: no CUDA stream needed
    g = _Graph(graph=None, keys=["d_loss", "d_loss", "g_loss"], values=torch.zeros(3),
               total=torch.tensor([1.0, 2.0, 3.0]), replays=2, per_replay={"d_loss": 2, "g_loss": 1})
    graphs.graphs, graphs.stopped = {("D", "G"): g}, []
    sums, counts = {"d_loss": torch.tensor(0.5)}, defaultdict(int, {"d_loss": 1})
    graphs.fold(sums, counts)
    assert sums["d_loss"].item() == 3.5 and counts["d_loss"] == 5
    assert sums["g_loss"].item() == 3.0 and counts["g_loss"] == 2
    assert g.replays == 0 and torch.equal(g.total, torch.zeros(3))
    graphs.fold(sums, counts)  # nothing replayed since: nothing added
    assert sums["d_loss"].item() == 3.5 and counts["d_loss"] == 5


def test_graphs_stopped_mid_run_keep_every_replayed_steps_statistics(fake_cuda, monkeypatch):
    """Lazy R1 every 4 steps, whose step waits for the GPU: graphs go off at its last warm-up, by
    which time the (D, G) graph has replayed steps whose statistics are not yet folded; the next
    record still counts every step."""
    reported_syncs(monkeypatch, when=lambda key: "reg:r1" in key[0])
    tr = graphs_on(Trainer(load_config("gan-ring8", ["train.device=cpu", "train.steps=40", "train.log_every=100",
                                                     "loss.regularizers=[{name: r1, weight: 1, every: 4}]"])))
    replayed = []
    stop = tr.graphs.stop
    tr.graphs.stop = lambda reason: (replayed.append(sum(g.replays for g in tr.graphs.graphs.values())), stop(reason))
    for _ in range(12):
        tr.train_step()
    assert "waits for the GPU" in tr.graphs.off and replayed[0] > 0  # some replays were pending at the stop
    tr._fold_graph_stats()
    assert tr._counts["d_loss"] == 12 and tr._counts["r1"] == 3 and tr._counts["g_loss"] == 12


def test_ema_batchnorm_is_re_estimated_after_every_step_replayed_from_a_graph(fake_cuda, monkeypatch):
    """A replayed step runs EMA.apply's kernels but none of its Python: the host marks the EMA's
    BatchNorm statistics stale at every step, so a grid (or checkpoint) after a replay re-estimates
    them for the averaged weights as it does after an eager step."""
    import gankit.train.ema as ema_module

    calls = []
    update_bn = ema_module.update_bn
    monkeypatch.setattr(ema_module, "update_bn", lambda *a, **k: (calls.append(1), update_bn(*a, **k))[1])
    tr = graphs_on(_cuda_trainer_on_cpu())
    ema = tr.emas["G"]
    assert ema.has_batchnorm
    steps = WARMUP_STEPS + 5
    for _ in range(steps):
        tr.train_step()
        assert ema.stale
        tr.sampling_net()  # a sample grid after every step
        assert not ema.stale
    assert sum(g.graph.replays for g in tr.graphs.graphs.values()) == steps - WARMUP_STEPS  # replayed from capture on
    assert len(calls) == steps


def test_runtime_json_says_when_graphs_went_off_mid_run(fake_cuda, monkeypatch, tmp_path, capsys):
    """A step that waits for the GPU turns graphs off at its last warm-up: runtime.json (written at
    the start with graphs on) then says off, why, and from which step, in this start's segment."""
    reported_syncs(monkeypatch)
    init = Trainer.__init__
    monkeypatch.setattr(Trainer, "__init__", lambda self, *a, **k: (init(self, *a, **k), graphs_on(self))[0])
    run = gankit.train("gan-ring8", ["train.steps=6", "train.log_every=3", "train.device=cpu", "health.enabled=false"],
                       out=tmp_path / "r", quiet=True)
    assert "note: CUDA graphs off from here: the step waits for the GPU" in capsys.readouterr().out
    info = json.loads((tmp_path / "r" / "runtime.json").read_text())
    assert info["cuda_graphs"] is False and "waits for the GPU" in info["cuda_graphs_off"]
    assert info["cuda_graphs_off"] == run.trainer.graphs.off
    (segment,) = info["history"]
    assert segment["from_step"] == 0 and segment["cuda_graphs"] is False
    assert segment["cuda_graphs_off_from"] == WARMUP_STEPS - 1  # the last warm-up run (0-based) of (D, G)
    assert not list((tmp_path / "r").glob("*.tmp*"))  # written atomically: no temporary left behind


def test_noise_from_a_checkpoint_of_another_device_reseeds_and_says_so(capsys):
    noise = ShardedNoise(4, seed=1)
    cuda_state = {"generator": torch.zeros(16, dtype=torch.uint8), "device": "cuda"}  # a CUDA generator's size
    noise.load_state_dict(cuda_state)
    assert "trained on cuda" in capsys.readouterr().out
    z = noise(3, "cpu")
    again = ShardedNoise(4, seed=7)
    again.load_state_dict(cuda_state)
    assert torch.equal(again(3, "cpu"), z)  # deterministic


# -- on a GPU ------------------------------------------------------------------------------------

def _params(tr):
    return torch.cat([p.detach().float().flatten() for n in ("G", "D") for p in tr.nets[n].parameters()]
                     + [p.detach().float().flatten() for p in tr.emas["G"].module.parameters()])


@pytest.fixture
def deterministic_cudnn():
    """cuDNN's deterministic algorithms, not benchmarked: two processes (or trainers) then run the
    same kernels, so a replayed step can be compared with an eager one bit for bit."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _cuda_trainer(*extra, warmup=None):
    tr = Trainer(load_config("dcgan-fashion-mnist", DCGAN_TINY + ["train.device=cuda", *extra]))
    if warmup is not None and tr.graphs is not None:
        tr.graphs.warmup = warmup
    return tr


def _cuda_trainer_on_cpu(*extra):
    return Trainer(load_config("dcgan-fashion-mnist", DCGAN_TINY + ["train.device=cpu", *extra]))


def _trained(*extra, warmup=None, steps=12):
    tr = _cuda_trainer(*extra, warmup=warmup)
    for _ in range(steps):
        tr.train_step()
    return tr


@pytest.mark.gpu
def test_replayed_steps_equal_eager_steps_bit_for_bit(deterministic_cudnn):
    """Same optimiser (capturable Adam), same draws, same random streams: 12 steps replayed from a
    graph give the weights, EMA and statistics of the same 12 steps run eagerly, exactly. (Each
    trainer seeds the RNGs when built, so they run one after the other.)"""
    graphed = _trained()
    assert graphed.cuda_graphs and graphed.graphs.graphs  # captured after WARMUP_STEPS, replayed since
    eager = _trained(warmup=10 ** 9)
    assert eager.cuda_graphs and not eager.graphs.graphs  # the same machinery, never captured
    print(f"graph vs eager: max |difference| {(_params(graphed) - _params(eager)).abs().max().item():.3g}")
    assert torch.equal(_params(graphed), _params(eager))
    sg, se = graphed.pop_stats(), eager.pop_stats()
    # The same per-step values summed in another order (the replays' total, then the eager sums):
    # equal to float32 rounding of a 12-term sum.
    assert sg.keys() == se.keys() and all(sg[k] == pytest.approx(se[k], rel=1e-6, abs=1e-7) for k in sg)
    # The plain eager path (non-capturable Adam, float learning rates) is the same arithmetic:
    # Adam's bias correction computed on the device in fp32 rather than on the host in fp64
    # moves weights by rounding only (relative 1e-4 after 12 steps of lr ~2e-4 updates).
    plain = _trained("train.cuda_graphs=off")
    assert plain.graphs is None
    diff = (_params(plain) - _params(graphed)).norm() / _params(graphed).norm()
    print(f"capturable vs plain Adam: relative difference {diff.item():.3g}")
    assert diff < 1e-4, diff


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_a_run_cut_and_resumed_equals_the_uninterrupted_run(tmp_path, device, deterministic_cudnn):
    """A run cut at step 10 and resumed (on a GPU: eager warm-up again, then captured again) ends
    where the uninterrupted run ends, and logs the same records once both log the same steps. The
    learning rate is constant (a schedule is laid over each run's own budget, which differs here) and
    there is no health monitor (the cut run's extra record at step 10 gives it another window)."""
    cfg = DCGAN_TINY + [f"train.device={device}", "health.enabled=false", "train.lr_schedule=constant"]
    full = gankit.train("dcgan-fashion-mnist", cfg + ["train.steps=20"], out=tmp_path / "full", quiet=True)
    gankit.train("dcgan-fashion-mnist", cfg + ["train.steps=10"], out=tmp_path / "cut", quiet=True)
    resumed = gankit.train(resume=tmp_path / "cut", overrides=["train.steps=20"], quiet=True)
    assert resumed.trainer.state.step == 20
    if device == "cuda":
        assert full.trainer.graphs.graphs and resumed.trainer.graphs.graphs
    print(f"resumed vs uninterrupted: max |difference| "
          f"{(_params(resumed.trainer) - _params(full.trainer)).abs().max().item():.3g}")
    assert torch.equal(_params(resumed.trainer), _params(full.trainer))
    rows = lambda d: {r["step"]: {k: v for k, v in r.items() if k not in ("seconds", "steps_per_s")}  # noqa: E731
                      for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())}
    cut, whole = rows(tmp_path / "cut"), rows(tmp_path / "full")
    assert cut[16] == whole[16] and cut[20] == whole[20]  # records 4 steps after the cut's last one


@pytest.mark.gpu
@pytest.mark.parametrize("graphs", ["on", "off"])
def test_no_step_waits_for_the_gpu(graphs):
    """Between log steps nothing copies to the host or synchronises: PyTorch's sync debug mode
    raises on any synchronising call."""
    tr = _cuda_trainer(f"train.cuda_graphs={graphs}", "train.log_every=1000")
    for _ in range(WARMUP_STEPS + 2):  # past the capture
        tr.train_step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(10):
            tr.train_step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert tr.cuda_graphs == (graphs == "on")
    assert all(v == v for v in tr.pop_stats().values())


@pytest.mark.gpu
def test_a_step_that_waits_for_the_gpu_is_never_captured_and_trains_eagerly(capsys):
    """A G step that reads its loss back (a host sync, which a graph cannot hold) is found in the
    last warm-up run; the run says why once and goes on eagerly, with every statistic."""
    tr = _cuda_trainer()
    g_step = tr.objective._g_step

    def reads_back(*args, **kwargs):
        stats = g_step(*args, **kwargs)
        if stats["g_loss"].item() != stats["g_loss"].item():  # a host read
            raise AssertionError("NaN")
        return stats

    tr.objective._g_step = reads_back
    for _ in range(WARMUP_STEPS + 4):
        tr.train_step()
    assert not tr.cuda_graphs and not tr.graphs.graphs and "waits for the GPU" in tr.graphs.off
    out = capsys.readouterr().out
    assert out.count("note: CUDA graphs off from here: the step waits for the GPU") == 1
    assert tr._counts["g_loss"] == WARMUP_STEPS + 4  # every step's statistics, counted eagerly
    stats = tr.pop_stats()
    assert stats["g_loss"] == stats["g_loss"] and tr.state.step == WARMUP_STEPS + 4


@pytest.mark.gpu
def test_lazy_regulariser_and_grad_norm_steps_get_their_own_graphs():
    """R1 every 2 D steps (double backward) and gradient norms on log steps: each set of phases is
    captured once warmed up, and the statistics count every replay."""
    tr = Trainer(load_config("gan-ring8", ["train.device=cuda", "train.log_every=2", "train.steps=40",
                                           "loss.regularizers=[{name: r1, weight: 1, every: 2}]"]))
    tr.grad_norms = True
    for _ in range(20):
        tr.train_step()
    # (D, reg:r1, G) with norms and (D, G) without: every other step each.
    assert tr.cuda_graphs and len(tr.graphs.graphs) == 2
    tr._fold_graph_stats()
    assert tr._counts["d_loss"] == 20 and tr._counts["r1"] == 10 and tr._counts["grad/D"] == 10
    stats = tr.pop_stats()
    assert all(v == v for v in stats.values()) and stats["r1"] > 0


@pytest.mark.gpu
def test_auto_precision_on_cuda_is_fp32_and_recorded(tmp_path):
    run = gankit.train("gan-ring8", ["train.device=cuda", "train.precision=auto", "train.steps=4", "train.log_every=2"],
                       out=tmp_path / "r", quiet=True)
    info = json.loads((tmp_path / "r" / "runtime.json").read_text())
    assert info["precision"] == "fp32" and "CUDA" in info["precision_reason"]
    assert info["device_name"] == torch.cuda.get_device_name() and info["cuda_graphs"] is True
    assert run.trainer.precision == "fp32"
