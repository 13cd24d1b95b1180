"""Typed configs: unknown keys and bad values fail before training, naming the key."""
import subprocess
import sys

import pytest

from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.recipes import recipe_names

REQUIRED = {"gan-ring8", "gan-grid25", "gan-mnist", "dcgan-fashion-mnist", "dcgan-digits"}


def test_required_recipes_ship():
    assert REQUIRED <= set(recipe_names())


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_loads_and_round_trips(name, tmp_path):
    cfg = load_config(name)
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(str(path)) == cfg


def test_overrides_are_typed():
    cfg = load_config("gan-ring8", ["train.steps=7", "train.g_optim.lr=1e-4", "train.g_optim.betas=[0.0, 0.9]"])
    assert cfg.train.steps == 7 and cfg.train.g_optim.lr == 1e-4 and cfg.train.g_optim.betas == (0.0, 0.9)


def test_a_file_is_judged_with_its_overrides(tmp_path):
    # A YAML without a budget is completed by --set; its values are checked once the overrides are in.
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndata: {name: ring8}\nmodel: {arch: mlp}\n")
    with pytest.raises(ConfigError, match="train.steps, train.epochs, train.minutes"):
        load_config(str(path))
    assert load_config(str(path), ["train.steps=3"]).train.steps == 3
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(str(path), ["train.steps=3", "train.batch_size=0"])


@pytest.mark.parametrize("override,needle", [
    ("train.stepz=5", "train.stepz"),
    ("model.g.widht=5", "model.g.widht"),
    ("train.steps=many", "train.steps"),
    ("train.precision=fp8", "train.precision"),
    ("loss.name=nonsense", "loss.name"),
    ("data.name=imagenet", "data.name"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.ema=1.5", "train.ema"),
    ("loss.regularizers=[{name: r3, weight: 1}]", "loss.regularizers.0.name"),
    ("loss.regularizers=[{name: r1, weight: -1}]", "loss.regularizers.0.weight"),
])
def test_bad_key_or_value_names_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config("gan-ring8", [override])


def test_cli_bad_key_is_one_line_and_nonzero_exit(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gankit", "train", "gan-ring8", "--set", "train.stepz=5",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.stepz" in lines[0] and "allowed" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing is started for a bad config


def test_unknown_recipe_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="gan-ring8"):
        load_config("no-such-recipe")


@pytest.mark.parametrize("value,message", [
    ("-4", "model.g.width: invalid value -4; allowed: an integer >= 0"),
    ("abc", "model.g.width: expected an integer, got 'abc'"),
    ("2.5", "model.g.width: expected an integer, got 2.5"),
])
def test_a_network_setting_of_the_wrong_type_or_sign_is_one_line_naming_it(value, message, tmp_path):
    """Checked against the network constructor's annotations before anything is built or written."""
    import gankit
    with pytest.raises(ConfigError) as e:
        gankit.train("gan-ring8", [f"model.g.width={value}", "train.steps=1"], out=tmp_path / "run", quiet=True)
    assert str(e.value) == message
    assert not (tmp_path / "run").exists()
