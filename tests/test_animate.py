"""Snapshots during training and `gankit animate`: files, pruning, resume, the curves, GIFs (1D, 2D)."""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import gaussian_kde

from gankit.errors import GankitError
from gankit.train.callback import Callback
from gankit.train.run import train
from gankit.train.snapshots import list_snapshots, load_snapshot, stride
from gankit.animate import build_model, animate_run, curves_1d, kde_density, mixture_density
from gankit.report import build_report

TINY_1D = ["data.size=1000", "model.g.width=8", "model.d.width=8", "model.d.depth=2", "train.d_steps=1",
           "train.batch_size=32", "train.threads=1", "train.log_every=5", "train.sample_every=1000",
           "train.checkpoint_minutes=null", "health.enabled=false"]


class FileCount(Callback):
    """Records how many snapshot files exist at every log step (after this step's snapshot: user
    callbacks run after gankit's own)."""

    def __init__(self, stop_at=None):
        self.counts, self.seen, self.stop_at = [], {}, stop_at

    def on_log(self, run, record):
        steps = [s for s, _ in list_snapshots(run.dir)]
        self.counts.append(len(steps))
        self.seen[record["step"]] = steps
        if record["step"] == self.stop_at:
            raise KeyboardInterrupt("killed")  # a crash between checkpoints


@pytest.fixture(scope="module")
def run_1d(tmp_path_factory):
    out = tmp_path_factory.mktemp("animate") / "gan1d"
    spy = FileCount()
    train("gan-1d", TINY_1D + ["train.steps=60", "train.snapshot_every=5", "train.snapshot_keep=6",
                               "train.checkpoint_every=30"], out=out, quiet=True, callbacks=[spy])
    return out, spy


def test_stride_halves_the_snapshots_when_they_would_pass_keep():
    # keep = 6 leaves 5 places for grid slots (one is the final snapshot's).
    assert [stride(k, 6) for k in (0, 4, 5, 9, 10, 19, 20)] == [1, 1, 2, 2, 4, 4, 8]


def test_snapshots_are_written_and_pruned_to_the_keep_limit(run_1d):
    out, spy = run_1d
    # 13 slots of 5 steps (0..60); keep 6 -> every 4th slot (12 // 4 + 1 = 4 <= 5): steps 0, 20, 40, 60.
    assert [s for s, _ in list_snapshots(out)] == [0, 20, 40, 60]
    assert max(spy.counts) <= 6
    # Before the doubling to stride 2 (slot 5) every slot had its snapshot.
    assert spy.seen[25] == [0, 5, 10, 15, 20]
    snap = load_snapshot(list_snapshots(out)[-1][1])
    assert snap["step"] == 60 and set(snap["modules"]) == {"G", "D"}
    assert snap["data"]["modes"] == [[4.0]] and snap["data"]["mode_std"] == 0.5
    assert not list((out / "snapshots").glob(".*tmp"))


def test_animate_writes_one_gif_frame_per_snapshot_and_the_report_shows_it(run_1d):
    out, _ = run_1d
    (out / "animation.gif").unlink(missing_ok=True)
    assert "data:image/gif;base64," in build_report(out)   # the report draws it when it is missing
    path = animate_run(out, fps=5)
    assert path == out / "animation.gif"
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 4
        assert im.info.get("loop") == 0
    assert "data:image/gif;base64," in build_report(out)


def test_animate_mp4(run_1d, tmp_path):
    # ffmpeg comes with the test extras (imageio-ffmpeg ships it inside its wheel).
    path = animate_run(run_1d[0], out=tmp_path / "a.mp4")
    assert path.read_bytes()[4:8] == b"ftyp"  # an ISO media file


def test_kde_integrates_to_one_and_matches_scipy():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 0.3, 3000), rng.normal(2, 0.7, 2000)])
    grid = np.linspace(-5, 7, 2001)
    p = kde_density(x, grid)
    assert abs(np.trapezoid(p, grid) - 1) < 1e-3
    np.testing.assert_allclose(p, gaussian_kde(x)(grid), rtol=1e-8, atol=1e-12)  # Scott's rule, as scipy
    q = mixture_density(grid, np.array([-1.0, 2.0]), 0.5)
    assert abs(np.trapezoid(q, grid) - 1) < 1e-6
    # A collapsed generator (every sample equal) is a narrow peak of mass 1, not a division by zero.
    assert abs(np.trapezoid(kde_density(np.full(100, 0.5), grid), grid) - 1) < 1e-3


def test_curves_of_a_snapshot(run_1d):
    out, _ = run_1d
    snap = load_snapshot(list_snapshots(out)[-1][1])
    model = build_model(snap)
    model.load(snap["modules"])
    grid = np.linspace(-20, 30, 4001)  # wide: the untrained G's samples fall anywhere in it
    frame = curves_1d(model, grid)
    assert abs(np.trapezoid(frame.p_g, grid) - 1) < 0.01
    assert frame.d is not None and frame.d.min() >= 0 and frame.d.max() <= 1
    # D's curve is sigmoid(D's logit) at the grid points.
    with torch.no_grad():
        logits = model.nets["D"](torch.tensor(grid[:5, None], dtype=torch.float32))
    np.testing.assert_allclose(frame.d[:5], torch.sigmoid(logits).double().numpy(), rtol=1e-6)
    # z is 1-D (the recipe's): the arrows of x = G(z) at the quantiles (i + ½)/N of N(0, 1), in order.
    u, gx = frame.mapping
    assert model.cfg.model.z_dim == 1 and np.allclose(np.diff(u), u[0] * 2) and np.isfinite(gx).all()


def test_animate_2d_ring8(tmp_path):
    out = tmp_path / "ring8"
    train("gan-ring8", ["data.size=1000", "model.g.width=16", "model.d.width=16", "train.batch_size=32",
                        "train.threads=1", "train.steps=20", "train.log_every=10", "train.snapshot_every=10",
                        "health.enabled=false"], out=out, quiet=True)
    assert [s for s, _ in list_snapshots(out)] == [0, 10, 20]
    path = animate_run(out, out=tmp_path / "ring8.gif")
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size[0] > 300


def test_animate_and_report_a_minibatch_discrimination_run_score_each_point_in_a_batch(tmp_path, monkeypatch):
    # All 14,400 grid points in one batch made the minibatch layer compare every pair of them
    # ((B, B, K, Dk): 83 GB) and, memory aside, scored each point against the other grid points.
    out = tmp_path / "mbd"
    train("mbd-ring8", ["data.size=1000", "model.g.width=16", "model.d.width=16", "train.batch_size=32",
                        "train.steps=20", "train.log_every=10", "train.snapshot_every=10",
                        "health.enabled=false"], out=out, quiet=True)
    snap = load_snapshot(list_snapshots(out)[-1][1])
    model = build_model(snap)
    model.load(snap["modules"])
    assert model.batch_dependent
    rng = np.random.default_rng(0)
    pts, ctx = rng.normal(size=(40, 2)), model.samples(31, seed=1)
    d = model.d_values(pts, context=ctx)
    # Each point as D scores it first in a real batch of 32: itself and the 31 context samples.
    with torch.no_grad():
        ref = [torch.sigmoid(model.nets["D"](torch.tensor(np.vstack([p[None], ctx]), dtype=torch.float32))[0]).item()
               for p in pts]
    np.testing.assert_allclose(d, ref, rtol=1e-5, atol=1e-6)  # float32 sums over 31 samples
    assert len(set(np.round(d, 6))) > 1
    # Bounded memory: no call of the minibatch layer sees more than D_CHUNK rows against the context.
    import gankit.animate as anim
    seen = []
    layer = model.nets["D"].mbd
    hook = layer.register_forward_hook(lambda m, inp, o: seen.append((inp[0].shape[0], None if m.reference is None
                                                                      else m.reference.shape[0])))
    monkeypatch.setattr(anim, "D_CHUNK", 500)
    model.d_values(rng.normal(size=(1200, 2)), context=ctx)
    hook.remove()
    assert seen == [(31, None), (500, 31), (500, 31), (200, 31)] and layer.reference is None
    path = animate_run(out, out=tmp_path / "mbd.gif")
    with Image.open(path) as im:
        assert im.n_frames == 3
    assert "data:image/gif;base64," in build_report(out)


def test_a_run_without_snapshots_says_how_to_get_them(tmp_path):
    out = tmp_path / "plain"
    train("gan-ring8", ["data.size=500", "model.g.width=8", "model.d.width=8", "train.batch_size=32",
                        "train.threads=1", "train.steps=5", "train.log_every=5", "health.enabled=false"],
          out=out, quiet=True)
    assert not (out / "snapshots").exists()
    with pytest.raises(GankitError, match="train.snapshot_every") as e:
        animate_run(out)
    assert "\n" not in str(e.value)
    with pytest.raises(GankitError, match=r"\.gif or \.mp4"):
        animate_run(out, out=tmp_path / "x.png")
    # an image run keeps no snapshots, whatever train.snapshot_every says: not advice to retrain, but why
    image = tmp_path / "image"
    train("dcgan-digits", ["model.g.width=4", "model.d.width=4", "train.steps=2", "train.log_every=1",
                           "train.threads=1", "health.enabled=false"], out=image, quiet=True)
    with pytest.raises(GankitError, match="draws 1D/2D mixture data; this run's data is image") as e:
        animate_run(image)
    assert "snapshot_every" not in str(e.value)


def test_resume_drops_snapshots_after_the_checkpoint_and_makes_them_again(tmp_path):
    common = TINY_1D + ["train.steps=40", "train.snapshot_every=5", "train.checkpoint_every=20"]
    whole = tmp_path / "whole"
    train("gan-1d", common, out=whole, quiet=True)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train("gan-1d", common, out=cut, quiet=True, callbacks=[FileCount(stop_at=35)])
    # Killed at step 35 (after its snapshot); the last checkpoint is step 20's.
    assert [s for s, _ in list_snapshots(cut)] == [0, 5, 10, 15, 20, 25, 30, 35]
    spy = FileCount()
    train(None, resume=cut, quiet=True, callbacks=[spy])
    assert spy.seen[25] == [0, 5, 10, 15, 20, 25]        # 30 and 35 dropped at the start, 25 made again
    assert [s for s, _ in list_snapshots(cut)] == [s for s, _ in list_snapshots(whole)] == list(range(0, 45, 5))
    # Snapshots draw nothing from training's random streams: the resumed run's weights are the same.
    a, b = load_snapshot(cut / "snapshots" / "step_000035.safetensors"), \
        load_snapshot(whole / "snapshots" / "step_000035.safetensors")
    for name in ("G", "D"):
        for k, v in a["modules"][name].items():
            assert torch.equal(v, b["modules"][name][k]), (name, k)
