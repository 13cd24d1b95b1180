"""The Python API's arguments: integers as a user writes them (numpy, torch scalars and arrays) are
taken; anything else is one GankitError line naming the argument, never a torch traceback."""
import numpy as np
import pytest
import torch

import gankit
from gankit.errors import GankitError

TINY = ["data.name=digits", "data.resolution=16", "model.conditional=true", "model.z_dim=8", "model.g.width=8",
        "model.d.width=8", "train.minutes=null", "train.steps=1", "train.batch_size=8", "train.threads=1",
        "train.precision=fp32", "health.enabled=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return gankit.train("dcgan-digits", TINY, out=tmp_path_factory.mktemp("api") / "c", quiet=True)


def test_numpy_and_torch_integers_are_taken(run):
    gan = gankit.load(run)  # the Run gankit.train returned, as well as its folder
    assert torch.equal(gan.sample(3, seed=np.int64(1))[0], gan.sample(3, seed=1)[0])
    assert gan.sample(np.int64(3), labels=np.int64(3))[1].tolist() == [3, 3, 3]
    assert gan.sample(2, labels=torch.tensor(4))[1].tolist() == [4, 4]
    assert gan.sample(2, labels=np.array([2, 7]))[1].tolist() == [2, 7]
    assert gan.sample(2, labels=torch.tensor([0, 9]), batch_size=np.int32(1))[1].tolist() == [0, 9]


@pytest.mark.parametrize("kwargs,needle", [
    ({"n": 2.5}, "n=2.5: give a whole number"),
    ({"n": -1}, "n=-1: give a whole number of at least 0"),
    ({"n": 2, "batch_size": 0}, "batch_size=0: give a whole number of at least 1"),
    ({"n": 2, "seed": 1.5}, "seed=1.5"),
    ({"n": 2, "labels": torch.tensor([0, 99])}, "labels: class 99 is not one of this model's classes 0..9"),
    ({"n": 3, "labels": torch.tensor([0, 1])}, "labels: 2 labels for n=3 samples"),
    ({"n": 2, "labels": [0.5, 1.0]}, "labels: give 2 integer class indices"),
    ({"n": 2, "labels": 1.5}, "labels=1.5"),
    ({"n": 2, "labels": 99}, "this model has classes 0..9"),
])
def test_bad_arguments_are_one_line_naming_them(run, kwargs, needle):
    with pytest.raises(GankitError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        gankit.load(run.dir).sample(**kwargs)


def test_a_device_that_is_not_one_is_one_line(run):
    with pytest.raises(GankitError, match="device='gpu': not a device; use auto, cpu, cuda or cuda:N"):
        gankit.load(run.dir, device="gpu")


def test_sample_interpolate_draws_n_walks(run, tmp_path):
    """`gankit sample RUN -n 3 --interpolate`: -n is the number of walks (rows of 10 steps), as documented."""
    from PIL import Image

    from gankit.cli.main import main

    for n, rows in ((["-n", "3"], 3), ([], 8)):
        out = tmp_path / f"w{rows}.png"
        assert main(["sample", str(run.dir), *n, "--interpolate", "-o", str(out)]) == 0
        h = Image.open(out).size[1]
        assert h == rows * 16 + (rows + 1) * 2, h  # rows of 16 px tiles, padding 2


@pytest.mark.parametrize("argv,kwargs,cli_words,python_words", [
    (["--class", "99"], {"label": 99}, "--class 99: this model has classes 0..9", "label=99: this model has classes 0..9"),
    (["--interpolate", "--rejection"], {"interpolate": True, "rejection": True},
     "--interpolate walks the latent space; it cannot reject samples: drop --rejection",
     "interpolate=True walks the latent space; it cannot reject samples: drop rejection=True"),
    (["--interpolate", "-o", "{tmp}/x.npz"], {"interpolate": True, "out": "{tmp}/x.npz"},
     "--interpolate writes a picture: give -o FILE.png", "interpolate=True writes a picture: give out='FILE.png'"),
])
def test_a_message_names_the_option_as_its_user_wrote_it(run, tmp_path, capsys, argv, kwargs, cli_words, python_words):
    """The same mistake is named as a flag on the command line and as a keyword from Python (errors.option),
    and a command run in this process leaves Python's naming as it was."""
    from gankit.cli.main import main

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    kwargs = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in kwargs.items()}
    out = [] if "-o" in argv else ["-o", str(tmp_path / "a.png")]
    assert main(["sample", str(run.dir), *argv, *out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and cli_words in err[0], err
    with pytest.raises(GankitError) as e:
        gankit.sample(run.dir, **{"out": tmp_path / "b.png", **kwargs})
    assert python_words in str(e.value) and "--" not in str(e.value)
    assert not list(tmp_path.glob("*.png"))


def test_load_says_a_missing_path_and_refuses_a_checkpoint_a_model_folder_cannot_honour(run, tmp_path, capsys):
    """gankit.load (so sample, serve, export, eval alike): a path that is not there is "no such folder",
    not "no checkpoint there"; --checkpoint best on a model folder (one model) is refused, not ignored."""
    from gankit.cli.main import main

    with pytest.raises(GankitError, match=r"nope: no such folder; give a run folder"):
        gankit.load(tmp_path / "nope")
    assert main(["export", str(run.dir), "--format", "folder", "-o", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    with pytest.raises(GankitError, match=r"which='best': .*m is a model folder \(gankit export\), which holds one"):
        gankit.load(tmp_path / "m", which="best")
    assert main(["sample", str(tmp_path / "m"), "--checkpoint", "best", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gankit: error: --checkpoint best: ") and "\n" not in err
    assert not (tmp_path / "s.png").exists()
    assert gankit.load(tmp_path / "m").step == gankit.load(run).step   # the default still loads it
