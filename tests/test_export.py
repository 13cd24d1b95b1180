"""gankit export: ONNX files that agree with PyTorch (every network family, generation and translation),
their metadata, model folders that load without the run folder and sample identically, and the errors."""
import inspect
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

import gankit
from gankit.cli.main import main
from gankit.errors import GankitError
from gankit.export import (CHECK_BATCHES, TOLERANCE, check_onnx, export, frozen_copy, generation_spec, onnx_bytes,
                           read_onnx_metadata, sha256_file, translation_spec)
from gankit.nets import NETWORKS

# Tiny generators of every family: (sample_shape or (in_channels, out_channels, (H, W)), G kwargs, classes).
GENERATION = {
    "mlp": [((2,), {"width": 16, "depth": 2}, 0), ((1, 16, 16), {"width": 16}, 3)],
    "dcgan": [((1, 28, 28), {"width": 8}, 0), ((3, 32, 32), {"width": 8, "extra_layers": 1}, 3)],
    "resnet": [((3, 32, 32), {"width": 8}, 0), ((1, 32, 32), {"width": 8, "attention": 16, "spectral": True}, 3)],
    "biggan": [((3, 32, 32), {"width": 8, "shared_dim": 4}, 3)],
    "progan": [((1, 16, 16), {"width": 64, "max_width": 8}, 0)],
    # style generators are exported with their constant noise maps (deterministic graphs)
    "stylegan": [((1, 16, 16), {"w_dim": 8, "mapping_layers": 2, "width": 64, "max_width": 8}, 0)],
    "stylegan2": [((3, 16, 16), {"w_dim": 8, "mapping_layers": 2, "width": 64, "max_width": 8}, 3)],
}
TRANSLATION = {
    "pix2pix": [((1, 3, (32, 32)), {"width": 8, "depth": 5}), ((3, 3, (16, 24)), {"width": 4, "depth": 3,
                                                                                  "norm": "instance"})],
    "cyclegan": [((1, 1, (32, 32)), {"width": 8, "n_blocks": 2}), ((3, 1, (16, 16)), {"width": 4, "n_blocks": 1})],
    # restoration: super-resolution (outputs ×scale), Pix2PixHD's coarse-to-fine G, the gated inpainter
    "srresnet": [((3, 3, (8, 12)), {"width": 8, "n_blocks": 1, "scale": 4})],
    "rrdb": [((1, 1, (8, 8)), {"width": 8, "n_blocks": 1, "growth": 4, "scale": 2})],
    "pix2pixhd": [((8, 3, (32, 32)), {"width": 8, "n_downsample": 2, "n_blocks": 1, "n_blocks_local": 1})],
    "inpaint": [((4, 3, (16, 24)), {"width": 8, "dilations": (2, 4)})],
}
NET_CASES = ([pytest.param("generation", fam, *case, id=f"{fam}-{i}") for fam, cases in GENERATION.items()
              for i, case in enumerate(cases)]
             + [pytest.param("translation", fam, case[0], case[1], 0, id=f"{fam}-{i}")
                for fam, cases in TRANSLATION.items() for i, case in enumerate(cases)])

RUN = ["train.steps=3", "train.threads=1", "train.log_every=1", "health.enabled=false", "train.precision=fp32"]
TINY = {
    # conditional DCGAN with an EMA of G: the ONNX file and the folder must carry the EMA weights
    "cgan": ("cgan-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.g.width=8", "model.d.width=8",
                                    "train.batch_size=16", "train.ema=0.9"]),
    "pix2pix": ("pix2pix-edges2fashion", ["data.limit=64", "model.g.width=8", "model.d.width=8",
                                          "train.batch_size=8", "train.ema=0.9", "train.minutes=null"]),
    "cyclegan": ("cyclegan-digits2mnist", ["data.limit=48", "model.g.width=8", "model.g.n_blocks=1",
                                           "model.d.width=8", "train.batch_size=4", "loss.options.pool_size=3",
                                           "train.minutes=null"]),
    "ring": ("gan-ring8", ["model.g.width=16", "model.d.width=16", "train.batch_size=16"]),
    # a style generator: per-layer noise, exported as its constant maps
    "style": ("dcgan-digits", ["data.resolution=16", "data.limit=64", "model.z_dim=8", "model.arch=stylegan2",
                               "model.g={w_dim: 8, mapping_layers: 2, width: 64, max_width: 8}",
                               "model.d={width: 64, max_width: 8}", "train.batch_size=8"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, (recipe, overrides) in TINY.items():
        gankit.train(recipe, overrides + RUN, out=root / name, quiet=True)
    return root


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# Families made for one objective, whose networks are tested with it (tests/test_anomaly.py,
# tests/test_ssgan.py): GANomaly's encoder-decoder-encoder G and the semi-supervised GAN's MLP D.
# Not yet covered here: ONNX export of their runs.
OWN = {"ganomaly", "ssgan"}


def test_every_registered_family_is_covered():
    shipped = {n for n, fam in NETWORKS.items() if fam.generator.__module__.startswith("gankit.")}
    assert shipped == set(GENERATION) | set(TRANSLATION) | OWN
    for fam in GENERATION:  # the table's split follows what each generator takes
        assert "z_dim" in inspect.signature(NETWORKS.get(fam).generator.__init__).parameters
    for fam in TRANSLATION:
        assert "in_channels" in inspect.signature(NETWORKS.get(fam).generator.__init__).parameters


@pytest.mark.parametrize("kind,fam,shape,kwargs,classes", NET_CASES)
def test_onnx_of_every_family_agrees_with_pytorch(kind, fam, shape, kwargs, classes):
    torch.manual_seed(0)
    family = NETWORKS.get(fam)
    if kind == "generation":
        G = family.generator(z_dim=8, sample_shape=shape, num_classes=classes, **kwargs)
        spec = generation_spec(8, classes, shape)
    else:
        c_in, c_out, hw = shape
        G = family.generator(in_channels=c_in, out_channels=c_out, **kwargs)
        spec = translation_spec((c_in, *hw), (c_out, *(s * kwargs.get("scale", 1) for s in hw)))
    G.train()
    for m in G.modules():  # non-trivial BatchNorm statistics, so eval mode is really what is exported
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    G.eval()
    errors = check_onnx(onnx_bytes(frozen_copy(G), spec), G, spec)
    assert set(errors) == set(CHECK_BATCHES)             # the traced batch and another one
    assert max(errors.values()) <= TOLERANCE, errors


def test_the_check_sees_a_different_network():
    spec = generation_spec(8, 0, (1, 16, 16))
    torch.manual_seed(0)
    a = NETWORKS.get("dcgan").generator(z_dim=8, sample_shape=(1, 16, 16), num_classes=0, width=8).eval()
    torch.manual_seed(1)
    b = NETWORKS.get("dcgan").generator(z_dim=8, sample_shape=(1, 16, 16), num_classes=0, width=8).eval()
    assert max(check_onnx(onnx_bytes(frozen_copy(a), spec), b, spec).values()) > 10 * TOLERANCE


def test_the_dynamo_exporter_agrees_too(runs, tmp_path):
    res = export(runs / "ring", "onnx", tmp_path / "g.onnx", exporter="dynamo")
    assert res.max_abs_error <= TOLERANCE
    assert read_onnx_metadata(tmp_path / "g.onnx")["gankit.exporter"] == "dynamo"


def test_onnx_of_a_conditional_run_samples_what_gankit_samples(runs, tmp_path, capsys):
    out = tmp_path / "cgan.onnx"
    assert main(["export", str(runs / "cgan"), "--format", "onnx", "-o", str(out)]) == 0
    assert "max |difference|" in capsys.readouterr().out
    meta = read_onnx_metadata(out)
    model = gankit.load(runs / "cgan", device="cpu")
    assert [i["name"] for i in json.loads(meta["gankit.inputs"])] == ["z", "y"]
    outputs = json.loads(meta["gankit.outputs"])
    assert outputs == [{"name": "x", "dtype": "float32", "shape": ["N", 1, 16, 16],
                        "range": "[-1, 1] (uint8 pixel = round((v + 1) * 127.5))"}]
    assert meta["gankit.num_classes"] == "10" and meta["gankit.z_dim"] == str(model.cfg.model.z_dim)
    assert meta["gankit.ema"] == "true" and meta["gankit.run"] == "cgan" and meta["gankit.step"] == "3"
    assert meta["gankit.checkpoint_sha256"] == sha256_file(runs / "cgan" / "checkpoints" / "latest.safetensors")
    assert meta["gankit.version"] == gankit.__version__
    # gankit inspect reads the export's provenance as it reads a PNG's: who wrote it, run and checkpoint.
    from gankit.provenance import read_provenance
    prov = read_provenance(out)
    assert prov["made_by"] == "gankit export" and "command" in prov and prov["date"].endswith("Z")  # command: None in-process
    assert (prov["run"], prov["step"], prov["checkpoint_sha256"]) == ("cgan", 3, meta["gankit.checkpoint_sha256"])
    # The same noise and classes gankit.sample draws for a seed give the same images, at two batch sizes.
    s = session(out)
    assert [i.name for i in s.get_inputs()] == ["z", "y"] and s.get_outputs()[0].name == "x"
    for n in (10, 5):
        inputs = model.task.seeded(n, seed=4)
        x, y = model.sample(n, seed=4)
        got = s.run(None, {"z": inputs["z"].numpy(), "y": inputs["y"].numpy()})[0]
        assert got.shape == (n, 1, 16, 16)
        assert np.abs(got - x.numpy()).max() <= TOLERANCE
    # The raw (non-EMA) G differs: the file holds the EMA weights gankit samples with.
    raw = gankit.load(runs / "cgan", device="cpu", ema=False)
    inputs = model.task.seeded(8, seed=4)
    got = s.run(None, {"z": inputs["z"].numpy(), "y": inputs["y"].numpy()})[0]
    assert np.abs(got - raw.task.generate(raw.G, inputs).numpy()).max() > 1e-3


def test_onnx_of_a_style_run_is_g_with_its_constant_noise_and_says_so(runs, tmp_path, capsys):
    out = tmp_path / "style.onnx"
    assert main(["export", str(runs / "style"), "--format", "onnx", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vs PyTorch with noise_mode='const'" in printed and "gankit sample draws random" in printed
    meta = read_onnx_metadata(out)
    assert meta["gankit.noise"] == "const" and "noise_mode='const'" in meta["gankit.noise_meaning"]
    model = gankit.load(runs / "style", device="cpu")
    const = model.task.truncated(1.0, None, model.G, noise_mode="const")   # what the file computes, in gankit
    inputs = model.task.seeded(6, seed=2)
    got = session(out).run(None, {"z": inputs["z"].numpy()})[0]
    assert np.abs(got - const.generate(model.G, inputs).numpy()).max() <= TOLERANCE
    # gankit sample's noise is random (seeded): the picture differs, and the metadata says why
    x, _ = model.sample(6, seed=2)
    assert np.abs(got - x.numpy()).max() > 10 * TOLERANCE
    # a generator without noise of its own says so too
    assert export(runs / "ring", "onnx", tmp_path / "r.onnx").noise == "none"
    assert read_onnx_metadata(tmp_path / "r.onnx")["gankit.noise"] == "none"


@pytest.mark.parametrize("run,direction", [("pix2pix", None), ("cyclegan", None), ("cyclegan", "BtoA")])
def test_onnx_of_a_translation_run_translates_what_gankit_translates(runs, tmp_path, run, direction):
    out = tmp_path / "t.onnx"
    res = export(runs / run, "onnx", out, direction=direction)
    meta = read_onnx_metadata(out)
    assert meta["gankit.task"] == "translation"
    assert meta["gankit.direction"] == (direction or ("AtoB" if run == "cyclegan" else ""))
    assert meta["gankit.network"] == {"pix2pix": "G", None: "G_AB", "BtoA": "G_BA"}[direction if run == "cyclegan"
                                                                                       else "pix2pix"]
    model = gankit.load(runs / run, device="cpu")
    (inp,) = json.loads(meta["gankit.inputs"])
    assert inp["name"] == "x" and inp["range"].startswith("[-1, 1]")
    s = session(out)
    for n in (6, 2):
        x = torch.rand(n, *inp["shape"][1:], generator=torch.Generator().manual_seed(n)) * 2 - 1
        got = s.run(None, {"x": x.numpy()})[0]
        assert np.abs(got - model.translate(x, direction).numpy()).max() <= TOLERANCE
    assert res.max_abs_error <= TOLERANCE


def test_an_export_that_disagrees_is_refused_and_not_written(runs, tmp_path, monkeypatch):
    import gankit.export as ex

    # A graph whose weights are 0.01 off: what a wrong export would give.
    monkeypatch.setattr(ex, "onnx_bytes", lambda net, spec, exporter="torchscript", task=None:
                        onnx_bytes(_perturbed(net), spec, task=task))
    with pytest.raises(GankitError, match=r"differ by .* not written"):
        export(runs / "ring", "onnx", tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


def _perturbed(net):
    net = frozen_copy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1e-2)
    return net


@pytest.mark.parametrize("run", ["cgan", "pix2pix", "cyclegan"])
def test_model_folder_loads_without_the_run_folder_and_samples_identically(runs, tmp_path, run):
    src = tmp_path / "run"
    shutil.copytree(runs / run, src)
    before = gankit.load(src, device="cpu")
    if before.task.name == "generation":
        want = before.sample(12, seed=5)
    else:
        x = torch.rand(5, *before.info.sample_shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
        want = {d: before.translate(x, d) for d in before.directions()}
    res = export(src, "folder", tmp_path / "exported")
    assert sorted(p.name for p in res.path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(res.path, moved)
    shutil.rmtree(res.path), shutil.rmtree(src)
    after = gankit.load(moved, device="cpu")
    assert after.run_dir is None and after.step == before.step and after.cfg == before.cfg
    if before.task.name == "generation":
        got = after.sample(12, seed=5)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    else:
        for d, y in want.items():
            assert torch.equal(after.translate(x, d), y)
    for name, net in before.nets.items():  # every network, D included, with the sampling (EMA) weights
        for (k, a), b in zip(net.state_dict().items(), after.nets[name].state_dict().values()):
            assert torch.equal(a, b), (name, k)
    meta = json.loads((moved / "config.json").read_text())
    assert meta["source"]["checkpoint_sha256"] == sha256_file(runs / run / "checkpoints" / "latest.safetensors")
    card = (moved / "README.md").read_text()
    assert f"**{before.step:,} generator steps**" in card and "gankit.load(" in card
    assert "Not evaluated" in card
    assert b"__reduce__" not in (moved / "model.safetensors").read_bytes()[:4096]  # safetensors, not a pickle


def test_model_card_carries_the_best_fid_and_its_card(runs, tmp_path):
    run = tmp_path / "ring"
    shutil.copytree(runs / "ring", run)
    result = gankit.evaluate(run, metrics="fid", n=64, quiet=True)
    export(run, "folder", tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    fid = result["fid"]
    assert f"**{fid:.4g}**" in card and result.results[0]["card_id"] in card and "Not evaluated" not in card
    # The folder can itself be exported (to ONNX, or to another folder that keeps the FID).
    assert export(tmp_path / "m", "onnx", tmp_path / "m.onnx").max_abs_error <= TOLERANCE
    export(tmp_path / "m", "folder", tmp_path / "m2")
    assert json.loads((tmp_path / "m2" / "config.json").read_text())["best_fid"]["value"] == pytest.approx(fid)


def test_errors_are_one_line(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs / "ring", unfinished)
    (unfinished / "checkpoints" / "best.safetensors").unlink()
    cases = [
        (["export", str(tmp_path / "nope"), "--format", "onnx", "-o", str(tmp_path / "a.onnx")], "no such run folder"),
        (["export", str(tmp_path / "empty"), "--format", "folder", "-o", str(tmp_path / "f")], "no checkpoint"),
        (["export", str(unfinished), "--format", "onnx", "--checkpoint", "best", "-o", str(tmp_path / "a.onnx")],
         "no best checkpoint yet"),
        (["export", str(runs / "ring"), "--format", "onnx", "-o", str(tmp_path / "a.txt")], "ends in .onnx"),
        (["export", str(runs / "ring"), "--format", "folder", "-o", str(tmp_path / "full")], "not empty"),
        (["export", str(runs / "ring"), "--format", "onnx", "--direction", "BtoA", "-o", str(tmp_path / "a.onnx")],
         "one direction"),
        (["export", str(runs / "cyclegan"), "--format", "onnx", "--direction", "AtoC", "-o", str(tmp_path / "a.onnx")],
         "translates AtoB, BtoA"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, (argv, err)
    with pytest.raises(GankitError, match="unknown export format; choose one of: onnx, folder"):
        export(runs / "ring", "tflite", tmp_path / "x")
    with pytest.raises(SystemExit):  # argparse rejects it before export runs
        main(["export", str(runs / "ring"), "--format", "tflite", "-o", str(tmp_path / "x")])
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "f").exists()


def test_model_card_of_a_translation_run_reads_its_eval_json(runs, tmp_path):
    run = tmp_path / "cyclegan"
    shutil.copytree(runs / "cyclegan", run)
    # What gankit.evaluation.evaluate_translation wrote for this tiny run (n=32; its 16 s are
    # too long for this test), trimmed.
    doc = {"protocol": {"split": "test", "n": 32, "seed": 0, "checkpoint": "latest", "data": "digits2mnist"},
           "AtoB": {"n": 32, "fid": 969.99, "content_kept": 0.09375, "fid_input": 162.1},
           "BtoA": {"n": 32, "fid": 54.750387, "content_kept": 0.15625, "fid_input": 27.09}}
    (run / "eval.json").write_text(json.dumps(doc))
    export(run, "folder", tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "**54.75**" in card and "direction     BtoA" in card and "split         test" in card
    assert json.loads((tmp_path / "m" / "config.json").read_text())["best_fid"]["card"]["direction"] == "BtoA"


# -- what the task makes, in the graph (restoration: composition and clamp) -------------------------

def _restoration(kind):
    """A tiny restoration G, its task (the composition gankit uses) and the export spec."""
    from gankit.tasks import TranslationTask

    torch.manual_seed(0)
    if kind == "keep-known":
        G = NETWORKS.get("inpaint").generator(in_channels=4, out_channels=3, width=8, dilations=(2,))
        return G.eval(), TranslationTask(compose="keep-known"), translation_spec((4, 16, 16), (3, 16, 16), kind)
    if kind == "lab":  # a colouriser: L* in, a*b* predicted, RGB out
        G = NETWORKS.get("pix2pix").generator(in_channels=1, out_channels=2, width=4, depth=3)
        return G.eval(), TranslationTask(compose="lab"), translation_spec((1, 16, 16), (3, 16, 16), kind)
    G = NETWORKS.get("srresnet").generator(in_channels=3, out_channels=3, width=8, n_blocks=1, scale=2)
    with torch.no_grad():  # a linear output that overshoots [-1, 1] (as a trained one does, slightly)
        for p in G.parameters():
            p.mul_(3)
    return G.eval(), TranslationTask(), translation_spec((3, 8, 8), (3, 16, 16))


@pytest.mark.parametrize("kind", ["keep-known", "lab", "sr"])
def test_onnx_of_a_restoration_model_is_the_tasks_composed_output(kind, tmp_path):
    G, task, spec = _restoration(kind)
    data = onnx_bytes(frozen_copy(G), spec, task=task)
    assert max(check_onnx(data, G, spec, task=task).values()) <= TOLERANCE
    x = spec.example(5, seed=3)["x"]
    got = session_of(data).run(None, {"x": x.numpy()})[0]
    want = task.generate(G, {"x": x}).numpy()                       # what model.translate(x) gives
    assert got.shape == want.shape and np.abs(got - want).max() <= TOLERANCE
    raw = G(x).detach().numpy()
    if kind == "keep-known":
        mask = x[:, -1:].expand(-1, 3, -1, -1).numpy()
        assert set(np.unique(mask)) == {0.0, 1.0} and (x[:, :-1].numpy()[mask == 1] == 0).all()  # realistic inputs
        assert np.array_equal(got[mask == 0], x[:, :-1].numpy()[mask == 0])   # known pixels bit-exact
        assert np.abs(raw - got)[mask == 0].max() > 0.1                        # the raw network's differ
        assert "mask" in spec.inputs[0]["range"] and "1 on the pixels to fill" in spec.inputs[0]["range"]
    elif kind == "lab":
        assert raw.shape[1] == 2 and got.shape[1] == 3 and np.abs(got).max() <= 1
    else:
        assert np.abs(raw).max() > 1.2 and np.abs(got).max() <= 1.0           # clamped as translate clamps


def session_of(data):
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def test_a_channel_mismatch_is_not_blamed_on_the_batch_axis():
    from gankit.tasks import TranslationTask

    G, task, spec = _restoration("lab")
    raw = onnx_bytes(frozen_copy(G), spec, task=TranslationTask())  # a graph without the L*a*b* -> RGB step
    with pytest.raises(GankitError, match=r"returned shape \(8, 2, 16, 16\).*channels or size differ") as e:
        check_onnx(raw, G, spec, task=task)
    assert "batch axis" not in str(e.value)


def test_onnx_never_replaces_a_file_gankit_did_not_write(runs, tmp_path, capsys):
    mine = tmp_path / "mine.onnx"
    mine.write_text("my precious model")
    assert main(["export", str(runs / "ring"), "--format", "onnx", "-o", str(mine)]) == 2
    err = capsys.readouterr().err.strip()
    assert "gankit did not write it" in err and len(err.splitlines()) == 1
    assert mine.read_text() == "my precious model"
    ours = tmp_path / "ours.onnx"
    export(runs / "ring", "onnx", ours)
    export(runs / "cgan", "onnx", ours)                                   # its own file: replaced
    assert read_onnx_metadata(ours)["gankit.run"] == "cgan"


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "ae"
    gankit.train("autoencoder-fashion-mnist", ["data.limit=32", "model.g.width=4", "train.batch_size=8",
                                               "train.minutes=null"] + RUN[1:] + ["train.steps=1"], out=out, quiet=True)
    return out


def test_an_anomaly_detector_is_refused_as_onnx_and_its_card_says_what_it_is(detector, tmp_path, capsys):
    assert main(["export", str(detector), "--format", "onnx", "-o", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "anomaly detector" in err and "gankit score" in err and len(err.splitlines()) == 1
    export(detector, "folder", tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "An anomaly detector" in card and "gankit score" in card and "noise z" not in card
    assert "unconditional-image-generation" not in card and "--format onnx" not in card and "sample(" not in card


# -- model folders: whole, verified, no code run ------------------------------------------------------

@pytest.fixture(scope="module")
def folder(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("folders") / "cgan"
    export(runs / "cgan", "folder", out)
    return out


def test_a_damaged_or_nan_model_folder_is_refused_in_one_line(folder, tmp_path):
    import hashlib

    from safetensors.torch import load_file, save

    flipped = tmp_path / "flipped"
    shutil.copytree(folder, flipped)
    data = bytearray((flipped / "model.safetensors").read_bytes())
    data[-40] ^= 1                                      # one bit of a weight: still a valid safetensors file
    (flipped / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(GankitError, match=r"model.safetensors: damaged: its SHA-256 does not match"):
        gankit.load(flipped, device="cpu")
    nan = tmp_path / "nan"                              # NaN weights whose hash matches: still refused
    shutil.copytree(folder, nan)
    tensors = load_file(str(nan / "model.safetensors"))
    tensors["G.net.0.weight" if "G.net.0.weight" in tensors else next(
        k for k, v in tensors.items() if k.startswith("G.") and v.is_floating_point())].fill_(float("nan"))
    data = save(tensors, metadata={"format": "gankit-model-v1"})
    (nan / "model.safetensors").write_bytes(data)
    meta = json.loads((nan / "config.json").read_text())
    meta["files"]["model.safetensors"] = hashlib.sha256(data).hexdigest()
    (nan / "config.json").write_text(json.dumps(meta))
    with pytest.raises(GankitError, match=r"holds \d+ NaN or infinite values") as e:
        gankit.load(nan, device="cpu")
    assert len(str(e.value).splitlines()) == 1


def test_a_model_folder_naming_plugins_runs_no_code_unless_trusted(folder, tmp_path, monkeypatch, capsys):
    import sys

    hub = tmp_path / "hub"
    shutil.copytree(folder, hub)
    meta = json.loads((hub / "config.json").read_text())
    meta["config"]["plugins"] = ["gankit_test_plugin_ran"]
    (hub / "config.json").write_text(json.dumps(meta))
    (tmp_path / "gankit_test_plugin_ran.py").write_text("import builtins\nbuiltins.GANKIT_PLUGIN_RAN = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gankit_test_plugin_ran", raising=False)
    with pytest.raises(GankitError, match="names plugins gankit_test_plugin_ran: they run code.*trust_plugins=True"):
        gankit.load(hub, device="cpu")
    assert main(["export", str(hub), "--format", "onnx", "-o", str(tmp_path / "h.onnx")]) == 2
    assert "if you trust them, run the command as gankit --trust-plugins COMMAND" in capsys.readouterr().err
    assert main(["sample", str(hub), "-o", str(tmp_path / "s.png")]) == 2
    import builtins
    assert not hasattr(builtins, "GANKIT_PLUGIN_RAN")
    try:
        assert gankit.load(hub, device="cpu", trust_plugins=True).step == 3   # the caller's choice: imported
        assert builtins.GANKIT_PLUGIN_RAN
        sys.modules.pop("gankit_test_plugin_ran", None)
        vars(builtins).pop("GANKIT_PLUGIN_RAN", None)
        export(hub, "onnx", tmp_path / "h.onnx", trust_plugins=True)        # and through export
        assert builtins.GANKIT_PLUGIN_RAN and gankit.load(hub, device="cpu").step == 3
        sys.modules.pop("gankit_test_plugin_ran", None)
        vars(builtins).pop("GANKIT_PLUGIN_RAN", None)
        assert main(["--trust-plugins", "sample", str(hub), "-o", str(tmp_path / "s.png")]) == 0  # any command
        assert builtins.GANKIT_PLUGIN_RAN
    finally:
        vars(builtins).pop("GANKIT_PLUGIN_RAN", None)
        sys.modules.pop("gankit_test_plugin_ran", None)


def test_a_re_export_replaces_a_model_folder_whole_or_not_at_all(runs, folder, tmp_path, monkeypatch):
    import gankit.export as ex

    target = tmp_path / "m"
    shutil.copytree(folder, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    # killed after the new weights were written: the folder there is still the old one, byte for byte
    def crash(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ex, "atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        export(runs / "ring", "folder", target)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]             # no partial folder left behind
    export(runs / "ring", "folder", target)                                # replaced as a whole
    assert json.loads((target / "config.json").read_text())["source"]["run"] == "ring"
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    (target / "NOTES.md").write_text("mine")
    with pytest.raises(GankitError, match="also holds NOTES.md, which gankit did not write"):
        export(runs / "cgan", "folder", target)
    (target / "NOTES.md").unlink()
    with open(target / "README.md", "a") as f:
        f.write("my notes\n")
    with pytest.raises(GankitError, match="README.md was edited since gankit wrote it"):
        export(runs / "cgan", "folder", target)
    with pytest.raises(GankitError, match=r"which='best': .* is a model folder; it holds one set of weights"):
        export(folder, "onnx", tmp_path / "b.onnx", which="best")


def test_model_card_says_whose_fid_and_how_the_run_differs_from_its_recipe(runs, folder, tmp_path):
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: other" in card and "class-conditional" in card     # cgan: not unconditional
    assert "settings that differ from the `cgan-fashion-mnist` recipe:" in card and "`model.g.width=8`" in card
    run = tmp_path / "ring"
    shutil.copytree(runs / "ring", run)
    doc = {"step": 1, "source": {"step": 1, "checkpoint": "latest"},
           "results": [{"name": "fid", "value": 2.5, "card": {}, "card_id": "x"}]}
    (run / "eval.json").write_text(json.dumps(doc))                      # evaluated at step 1; exported at 3
    export(run, "folder", tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "**2.5** at step 1" in card and "**not a score of these weights** (step 3)" in card
