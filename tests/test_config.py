"""Typed configs: unknown keys and bad values fail before training, naming the key."""
import re
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


# -- sections merge; a key given twice is refused ---------------------------------------------------------


def test_a_mapping_set_merges_into_the_recipes_section():
    base = load_config("gan-ring8")
    cfg = load_config("gan-ring8", ["train={steps: 5}"])
    assert cfg.train.steps == 5
    # the recipe's other train settings stay (replacing the section gave batch 64, lr 2e-4, threads None)
    assert (cfg.train.batch_size, cfg.train.g_optim.lr, cfg.train.threads, cfg.train.log_every) == \
        (base.train.batch_size, base.train.g_optim.lr, base.train.threads, base.train.log_every) == (256, 1e-3, 1, 100)
    fast = load_config("fast-fashion-mnist", ["model.g={width: 32}"])
    assert fast.model.g == {"width": 32, "extra_layers": 2}  # the recipe's extra_layers kept
    assert load_config("gan-ring8").replace(**{"train": {"steps": 7}}).train.batch_size == 256
    assert load_config("fast-fashion-mnist", ["model.g={}"]).model.g == {}  # an empty mapping clears the section


@pytest.mark.parametrize("text,key,line,first", [
    ("train:\n  steps: 50\n", "train", 1, None),            # a section appended to a copied recipe
    ("eval:\n  n: 10\n  n: 20\n", "n", 3, 2),              # a key twice inside one section
])
def test_a_key_given_twice_in_a_yaml_file_is_refused_with_its_line(tmp_path, text, key, line, first):
    from gankit.recipes import recipe_path

    base = recipe_path("gan-ring8").read_text()
    n = base.count("\n")  # lines of the recipe; the appended text's lines follow
    first = n + first if first else base.splitlines().index("train:") + 1
    path = tmp_path / "dup.yaml"
    path.write_text(base + text)
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: line {n + line}: key {key!r} is given twice") and f"first on line {first})" in msg
    assert "\n" not in msg


# -- messages that name the file, the line and the close match ------------------------------------------


def test_a_yaml_syntax_error_keeps_pyyamls_line_column_and_problem(tmp_path):
    tab, bracket = tmp_path / "tab.yaml", tmp_path / "bracket.yaml"
    tab.write_text("name: x\ntrain:\n\tsteps: 3\n")
    bracket.write_text("name: x\nmodel: {g: {width: [1, 2}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(tab))
    assert str(e.value) == (f"{tab}: not valid YAML at line 3, column 1: found character '\\t' that cannot start "
                            "any token (while scanning for the next token)")
    with pytest.raises(ConfigError) as e:
        load_config(str(bracket))
    assert str(e.value) == (f"{bracket}: not valid YAML at line 2, column 25: expected ',' or ']', but got '}}' "
                            "(while parsing a flow sequence at line 2, column 20)")


def test_unknown_keys_and_names_say_where_and_suggest_the_close_one(tmp_path):
    from gankit.recipes import recipe_path

    typo = tmp_path / "typo.yaml"
    typo.write_text(recipe_path("gan-ring8").read_text().replace("batch_size", "batchsize"))
    with pytest.raises(ConfigError, match=rf"^{typo}: unknown config key train\.batchsize; did you mean "
                                          r"train\.batch_size\? allowed keys here: steps,"):
        load_config(str(typo))
    with pytest.raises(ConfigError, match=r"^--set train\.batchsize=3: unknown config key train\.batchsize; "
                                          r"did you mean train\.batch_size\?"):
        load_config("gan-ring8", ["train.batchsize=3"])
    with pytest.raises(ConfigError, match=r"^--set train=\{batchsize: 3\}: unknown config key train\.batchsize"):
        load_config("gan-ring8", ["train={batchsize: 3}"])
    with pytest.raises(ConfigError, match=r"^loss\.name: invalid value 'hinj'; did you mean hinge\? allowed: hinge,"):
        load_config("gan-ring8", ["loss.name=hinj"])
    bad_arch = tmp_path / "arch.yaml"
    bad_arch.write_text(recipe_path("gan-ring8").read_text().replace("arch: mlp", "arch: mpl"))
    with pytest.raises(ConfigError, match=rf"^{bad_arch}: model\.arch: invalid value 'mpl'; did you mean mlp\?"):
        load_config(str(bad_arch))
    with pytest.raises(ConfigError, match=r"^train\.lr_schedule: invalid value 'cosin'; did you mean cosine\?"):
        load_config("gan-ring8", ["train.lr_schedule=cosin"])


def test_paths_that_are_not_yaml_files_get_their_own_line(tmp_path, monkeypatch):
    from gankit.recipes import recipe_path

    monkeypatch.chdir(tmp_path)
    text = recipe_path("gan-ring8").read_text()
    (tmp_path / "upper.YAML").write_text(text)
    assert load_config("upper.YAML").name == "gan-ring8"  # a YAML file whatever the suffix's case
    (tmp_path / "noext").write_text(text)
    (tmp_path / "folder").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(text)
    (tmp_path / "empty.yaml").write_text("# only a comment\n\n")
    for source, message in [
        ("noext", "noext: not a .yaml or .yml file (a config file's name ends in .yaml); rename it to noext.yaml"),
        ("folder", "folder: a folder, not a recipe or YAML file; give a recipe name or a .yaml file"),
        ("run", "run: a run folder, not a recipe; train its config again with run/config.yaml, or continue the run "
                "with --resume run"),
        ("nothere.yaml", f"nothere.yaml: no such file (looked in {tmp_path})"),
        ("empty.yaml", "empty.yaml: empty (no settings, only blank lines or comments); write a config in it, e.g. "
                       "a copy of a run's config.yaml (docs/usage.md#your-own-recipe)"),
    ]:
        with pytest.raises(ConfigError) as e:
            load_config(source)
        assert str(e.value) == message


# -- values -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override,key", [
    ("train.g_optim.lr=.inf", "train.g_optim.lr"),
    ("train.d_optim.lr=nan", "train.d_optim.lr"),
    ("train.g_optim.weight_decay=-1", "train.g_optim.weight_decay"),
    ("train.d_optim.weight_decay=.inf", "train.d_optim.weight_decay"),
])
def test_a_non_finite_lr_or_negative_weight_decay_is_refused(override, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": invalid value; allowed: a finite number"):
        load_config("gan-ring8", [override])


@pytest.mark.parametrize("raw,root", [("~", "~"), ("#x", "#x"), ("2024", "2024"), ("~/imgs", "~/imgs"),
                                      ("null", None), ("", None)])
def test_a_path_given_by_set_is_the_text_written(raw, root):
    # YAML would read ~ and #x as null (the default dataset) and 2024 as a number; a path is text.
    assert load_config("gan-ring8", [f"data.root={raw}"]).data.root == root
    assert load_config("gan-ring8").replace(**{"data.root": raw or None}).data.root == (raw or None)  # from Python


def test_sgd_is_plain_sgd_unless_momentum_is_set_and_each_optimiser_refuses_the_others_setting():
    """``name: sgd`` once took Adam's β1 (0.5) as its momentum, silently; now momentum is its own key,
    PyTorch's default 0 (rmsprop's too), and a setting the chosen optimiser has not got is one line."""
    import torch

    from gankit.train.loop import make_optimizer

    p = [torch.nn.Parameter(torch.zeros(2))]
    sgd = ["train.d_optim.name=sgd", "train.d_optim.lr=0.1"]
    cfg = load_config("gan-ring8", sgd + ["train.g_optim.name=rmsprop", "train.g_optim.lr=0.1"])
    assert cfg.train.d_optim.betas == (0.5, 0.999)  # the default, untouched: accepted
    assert make_optimizer(p, cfg.train.d_optim).param_groups[0]["momentum"] == 0.0
    assert make_optimizer(p, cfg.train.g_optim).param_groups[0]["momentum"] == 0.0
    cfg = load_config("gan-ring8", sgd + ["train.d_optim.momentum=0.5", "train.g_optim.name=rmsprop",
                                          "train.g_optim.momentum=0.9"])
    assert make_optimizer(p, cfg.train.d_optim).param_groups[0]["momentum"] == 0.5
    assert make_optimizer(p, cfg.train.g_optim).param_groups[0]["momentum"] == 0.9
    with pytest.raises(ConfigError, match=r"^train\.d_optim\.betas: \[0\.9, 0\.99\] does nothing with sgd "
                                          r"\(Adam's setting\); remove it \(train\.d_optim\.momentum sets"):
        load_config("gan-ring8", sgd + ["train.d_optim.betas=[0.9, 0.99]"])
    with pytest.raises(ConfigError, match=r"^train\.optim\.D\.betas: .* does nothing with rmsprop"):
        load_config("gan-ring8", ["train.optim={D: {name: rmsprop, betas: [0.0, 0.9]}}"])
    with pytest.raises(ConfigError, match=r"^train\.g_optim\.momentum: 0\.5 does nothing with adam"):
        load_config("gan-ring8", ["train.g_optim.momentum=0.5"])
    with pytest.raises(ConfigError, match=r"^train\.d_optim\.momentum: invalid value; allowed: a number in \[0, 1\)"):
        load_config("gan-ring8", sgd + ["train.d_optim.momentum=1.5"])
