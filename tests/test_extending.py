"""A user's own parts, from outside the package: a module named in the config's ``plugins`` registers a
loss and a regulariser, a run uses them, and a fresh process that loads the run imports the module
again; an objective whose declaration does not hold together is one line before anything trains."""
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

import gankit
from gankit.config import load_config
from gankit.errors import ConfigError, UnknownName
from gankit.objectives.base import OptimGroup, Phase, check_declaration
from gankit.registry import Registry
from gankit.train.loop import lazy_ratio

PLUGIN = textwrap.dedent('''
    """A user's loss and regulariser, registered on import."""
    import torch.nn.functional as F

    from gankit.losses import REGULARIZERS, AdversarialLoss, register_loss

    register_loss(AdversarialLoss("plugin-soft-logistic", lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean(),
                                  lambda f: F.softplus(-f).mean()))


    @REGULARIZERS.register("plugin-fake-drift")
    def fake_drift(critic, real, fake):
        return critic(fake).pow(2).mean()
''')
RECIPE = textwrap.dedent('''
    name: my-ring
    plugins: [gankit_test_plugin]
    data: {name: ring8, size: 500}
    model: {arch: mlp, g: {width: 8}, d: {width: 8}}
    loss: {name: plugin-soft-logistic, regularizers: [{name: plugin-fake-drift, weight: 0.1}]}
    train: {steps: 4, batch_size: 16, log_every: 2, threads: 1}
    health: {enabled: false}
''')


def test_a_plugin_module_registers_parts_a_recipe_and_a_reloaded_run_use(tmp_path, monkeypatch):
    (tmp_path / "gankit_test_plugin.py").write_text(PLUGIN)
    (tmp_path / "my.yaml").write_text(RECIPE)
    with pytest.raises(ConfigError, match=r"plugins: cannot import 'gankit_test_plugin' \(No module named"):
        load_config(str(tmp_path / "my.yaml"))  # not on Python's path yet: one line saying how
    monkeypatch.syspath_prepend(str(tmp_path))
    run = gankit.train(str(tmp_path / "my.yaml"), out=tmp_path / "run", quiet=True)
    assert "plugin-fake-drift" in run.records[-1] and run.trainer.state.step == 4
    assert "- gankit_test_plugin" in (run.dir / "config.yaml").read_text()
    # A fresh process knows nothing of the plugin until the run's config names it.
    env = {"PYTHONPATH": str(tmp_path), "GANKIT_DEVICE": "cpu", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "gankit", "sample", str(run.dir), "-o", str(tmp_path / "s.npz")],
                        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path.parent)
    assert ok.returncode == 0, ok.stderr[-2000:]
    env["PYTHONPATH"] = ""
    missing = subprocess.run([sys.executable, "-m", "gankit", "sample", str(run.dir), "-o", str(tmp_path / "t.npz")],
                             capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path.parent)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith(
        "gankit: error: plugins: cannot import 'gankit_test_plugin'")
    with pytest.raises(ConfigError, match="not a module name"):
        load_config("gan-ring8", ["plugins=[./my_plugin.py]"])


def test_an_unknown_name_is_a_config_error_and_a_key_error():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(UnknownName) as e:
        reg.get("b")
    assert isinstance(e.value, KeyError) and isinstance(e.value, ConfigError)
    assert str(e.value).startswith("unknown widget 'b'; choose one of: a (a part of your own registers")


CELL = textwrap.dedent('''
    from gankit.losses import AdversarialLoss, register_loss

    def d_cell(real, fake):
        return (fake - real).mean()

    def g_cell(fake):
        return -fake.mean() * SCALE

    register_loss(AdversarialLoss("cell-loss", d_cell, g_cell))
''')


def test_a_notebook_cell_run_again_replaces_its_part_and_another_definition_is_refused():
    """Re-running a cell (or reloading a module) registers the same definition again: the newer one
    wins. A different definition taking a registered name is refused, naming both."""
    from gankit.losses import LOSSES
    for scale in (1.0, 3.0):
        exec(CELL, {"__name__": "__main__", "SCALE": scale})
    assert float(LOSSES.get("cell-loss").g(torch.ones(2))) == -3.0  # the second run's function
    with pytest.raises(ValueError, match=r"'cell-loss' is already registered by __main__\.d_cell \+ __main__\.g_cell; "
                                         r"__main__\.d_cell \+ __main__\.g_other needs another name"):
        exec(CELL.replace("g_cell", "g_other"), {"__name__": "__main__", "SCALE": 1.0})
    with pytest.raises(ValueError, match="'hinge' is already registered by gankit.losses.adversarial.d_hinge"):
        exec(CELL.replace('"cell-loss"', '"hinge"'), {"__name__": "__main__", "SCALE": 1.0})
    LOSSES._items.pop("cell-loss")


def _objective(phases, optimizers, nets=("G", "D"), ema=(), task=object()):
    return SimpleNamespace(nets=dict.fromkeys(nets), optimizers=optimizers, phases=lambda d_steps: phases,
                           ema=ema, task=task)


GOOD = {"G": OptimGroup(("G",), "g_optim"), "D": OptimGroup(("D",), "d_optim")}


@pytest.mark.parametrize("objective,message", [
    (_objective([Phase("info", "G", ("G", "Q"))], GOOD, nets=("G", "D", "Q")),
     "phase 'info' trains 'Q', but its optimiser 'G' does not step it"),
    (_objective([Phase("D", "Info", ("D",))], GOOD), "phase 'D' steps optimiser 'Info', which it has not got"),
    (_objective([], {"G": OptimGroup(("G", "q"), "g_optim")}), "optimiser 'G' steps 'q', which is not one of its networks"),
    (_objective([], {"Q": OptimGroup(("G",), "q_optim")}), "takes its settings from train.q_optim, which does not exist"),
    (_objective([], GOOD, ema=("Gx",)), "ema names 'Gx'"),
    (_objective([], GOOD, task=None), "no task"),
])
def test_an_objective_that_does_not_hold_together_is_one_line(objective, message):
    with pytest.raises(ConfigError, match=message):
        check_declaration(objective)
    check_declaration(_objective([Phase("D", "D", ("D",)), Phase("G", "G", ("G",))], GOOD))  # a sound one passes


def test_only_a_lazy_regulariser_corrects_its_optimiser():
    """A phase merely run every 2 steps (a schedule of one's own) leaves lr and betas as configured."""
    schedule = [Phase("G", "G", ("G",)), Phase("info", "G", ("G",), every=2)]
    assert lazy_ratio(schedule, "G") == 1.0
    lazy = [Phase("D", "D", ("D",)), Phase("reg:r1", "D", ("D",), every=16, lazy=True)]
    assert lazy_ratio(lazy, "D") == pytest.approx(16 / 17)


def test_gankit_train_and_recipes_are_functions_however_gankit_was_imported():
    """``gankit.recipes()`` after ``gankit.recipes`` the package was imported (by a config load);
    ``gankit.train``'s signature and docstring are the function's, as help() and a notebook show them."""
    import inspect

    from gankit.recipes import recipe_names, recipe_path

    recipe_path("gan-ring8")  # the package gankit.recipes is imported: the attribute is the package now
    assert gankit.recipes() == gankit.recipes() == recipe_names() and "gan-ring8" in gankit.recipes()
    params = inspect.signature(gankit.train).parameters
    assert list(params)[:3] == ["recipe", "overrides", "out"] and "callbacks" in params
    assert gankit.train.__doc__.startswith("Train a GAN and return the finished")
    assert gankit.train.Run.__name__ == "Run"   # still the package
