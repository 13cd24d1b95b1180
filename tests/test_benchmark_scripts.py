"""The benchmark scripts' own logic: what they parse and the configs they would train."""
import importlib.util
from pathlib import Path

import pytest

from gankit.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


qvt = load_script("quality_vs_time")


def test_variant_overrides_split_on_top_level_commas_only():
    text = "train.g_optim.lr=8e-4,train.g_optim.betas=[0.0, 0.99],loss.regularizers=[{name: r1, every: 16}],seed=3"
    assert qvt.split_overrides(text) == ["train.g_optim.lr=8e-4", "train.g_optim.betas=[0.0, 0.99]",
                                         "loss.regularizers=[{name: r1, every: 16}]", "seed=3"]
    assert qvt.split_overrides("") == []


@pytest.mark.parametrize("entry", ["baseline", "fast", "no-ema", *qvt.ABLATIONS])
def test_every_entry_is_a_valid_config_that_differs_as_named(entry):
    recipe, overrides = qvt.entry_recipe(entry)
    cfg = load_config(recipe, overrides)
    fast = load_config("fast-fashion-mnist")
    if entry == "baseline":  # the DCGAN paper's settings
        assert (cfg.train.batch_size, cfg.train.g_optim.lr, cfg.train.g_optim.betas[0], cfg.train.precision,
                cfg.train.ema) == (128, 2e-4, 0.5, "fp32", None)
        assert cfg.model.g.get("extra_layers", 0) == cfg.model.d.get("extra_layers", 0) == 0
    elif entry in ("fast", "no-ema"):
        assert cfg == fast
    else:
        assert cfg != fast


def test_unknown_entry_names_the_choices():
    with pytest.raises(SystemExit, match="unknown entry 'nope'.*baseline, fast"):
        qvt.entry_recipe("nope")


translation = load_script("translation")


@pytest.mark.parametrize("entry", list(translation.ENTRIES))
def test_translation_entries_are_valid_configs_that_differ_as_named(entry):
    recipe, overrides = translation.ENTRIES[entry]
    cfg = load_config(recipe, overrides)
    opts = cfg.loss.options
    assert cfg.loss.objective == ("pix2pix" if entry in ("pix2pix", "l1-only") else "cyclegan")
    assert opts.get("adversarial", True) == (entry != "l1-only")
    assert opts.get("cycle_weight", 10.0) == (0 if entry == "no-cycle" else 10.0)
    assert opts.get("identity_weight", 0.5) == (0 if entry == "no-identity" else 0.5)


def test_translation_table_gives_mean_and_spread_per_direction():
    rec = lambda seed, fid: {"entry": "cyclegan", "seed": seed, "steps": 10,  # noqa: E731
                             "results": {"protocol": {}, "AtoB": {"fid": fid, "content_kept": 0.5}}}
    table = translation.summarise([rec(0, 10.0), rec(1, 14.0)])
    row = next(line for line in table.splitlines() if line.startswith("| cyclegan"))
    assert "12 ± 2.8" in row and "| AtoB | 2 |" in row


restoration = load_script("restoration")


@pytest.mark.parametrize("arm", sorted(restoration.ARMS))
def test_every_restoration_arm_is_a_valid_config_and_its_ablation_drops_only_the_critic(arm, tmp_path):
    recipe, extra, start = restoration.ARMS[arm]
    overrides = [*extra] + ([f"loss.options.init_from={tmp_path / start}"] if start else [])
    cfg = load_config(recipe, overrides)
    plain = load_config(recipe)
    adversarial = cfg.loss.options.get("adversarial", cfg.loss.objective != "sr")
    assert adversarial == (not arm.endswith(("-l1", "-recon", "-psnr")) and not arm.startswith("srresnet"))
    if not adversarial and cfg.loss.objective != "sr":  # the ablation: the same data, networks and budget
        assert (cfg.data, cfg.model, cfg.train) == (plain.data, plain.model, plain.train)
    assert (cfg.loss.options.get("init_from") is not None) == (start is not None)
    if start is not None:  # a GAN stage starts from its PSNR stage's networks: the same generator
        assert cfg.model.g == load_config(restoration.ARMS[start][0]).model.g
    assert {a for arms, _ in restoration.TASKS.values() for a in arms} == set(restoration.ARMS)


style = load_script("style_generators")


@pytest.mark.parametrize("arm", sorted(style.ARMS))
def test_every_style_arm_is_a_valid_32px_fashion_config_with_the_shared_budget(arm):
    recipe, extra = style.ARMS[arm]
    cfg = load_config(recipe, [*extra, "train.minutes=15", "train.threads=1", "train.steps=null", "train.epochs=null"])
    # every arm trains on the same data for the same wall time, only the time bounding it: Fashion-MNIST
    # at 32 px, or the emoji pair at its recipe's 64 px, scored against train (as the ADA paper) and test
    if "emoji" in arm:
        assert cfg.data.name == "emoji" and cfg.data.resolution == 64 and style.SPLITS[arm] == ("train", "test")
    else:
        assert cfg.data.name == "fashion-mnist" and cfg.data.resolution == 32 and arm not in style.SPLITS
    assert cfg.train.minutes == 15 and cfg.train.steps is None and cfg.train.epochs is None
    base = load_config(recipe)
    changed = {k.split("=")[0] for k in extra} - {"data.resolution"}
    for key in changed:  # an ablation differs from its recipe in the keys it names
        section, *rest = key.split(".")
        assert getattr(cfg, section) != getattr(base, section), key
    assert set(style.MAIN_ARMS) <= set(style.ARMS)


fashion = load_script("fashion")


def test_fashion_variants_are_sampled_as_gans_and_the_table_ranks_them_by_fid(tmp_path, capsys):
    assert set(fashion.RECIPES) <= set(fashion.image_recipes())
    for r in fashion.RECIPES:
        cfg = load_config(r)
        assert cfg.data.name == "fashion-mnist" and cfg.loss.objective in ("gan", *qvt.SAMPLED_AS_GAN), r
    import json

    def rows(entry, seed, fids):
        return [{"entry": entry, "seed": seed, "mark_min": m, "train_s": 60.0 * m, "step": 10 * m, "steps": 50,
                 "d_steps_per_g": 5 if entry == "b" else 1, "images_per_s": 100.0, "fid": f, "kid": f / 10,
                 "precision": 0.5, "recall": 0.25} for m, f in zip((1, 2, 5), fids)]
    (tmp_path / "runs").mkdir()
    for entry, seed, fids in (("a", 0, [90, 60, 30]), ("a", 1, [80, 50, 34]), ("b", 0, [40, 20, 10])):
        (tmp_path / "runs" / f"{entry}-seed{seed}.json").write_text(json.dumps(rows(entry, seed, fids)))
    assert fashion.main(["--report-only", "--out", str(tmp_path), "--minutes", "5"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| `")]
    assert table[0].startswith("| `b` | 1 | 10.00 |") and "50 (× 5)" in table[0]   # best FID first
    assert table[1].startswith("| `a` | 2 | 32.00 ± 2.83 |")
    assert "| `a` | 85.00 ± 7.07 | 55.00 ± 7.07 | 32.00 ± 2.83 |" in out          # FID at each mark
    assert (tmp_path / "fashion.png").stat().st_size > 10_000
