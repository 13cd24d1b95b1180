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
    with open(tmp_path / "rows.jsonl", "w") as f:   # the tracked raw file
        for entry, seed, fids in (("a", 0, [90, 60, 30]), ("a", 1, [80, 50, 34])):
            f.write("".join(json.dumps(r) + "\n" for r in rows(entry, seed, fids)))
    (tmp_path / "runs").mkdir()                      # the older layout is still read
    (tmp_path / "runs" / "b-seed0.json").write_text(json.dumps(rows("b", 0, [40, 20, 10])))
    assert fashion.main(["--report-only", "--out", str(tmp_path), "--minutes", "5"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| `")]
    assert table[0].startswith("| `b` | 1 | 10.00 |") and "50 (× 5)" in table[0]   # best FID first
    assert table[1].startswith("| `a` | 2 | 32.00 ± 2.83 |")
    assert "| `a` | 85.00 ± 7.07 | 55.00 ± 7.07 | 32.00 ± 2.83 |" in out          # FID at each mark
    assert (tmp_path / "fashion.png").stat().st_size > 10_000


def test_fashion_keeps_every_run_s_raw_rows_in_rows_jsonl_and_does_not_repeat_a_run(tmp_path, monkeypatch):
    """Each run appends its scored rows to OUT/rows.jsonl (tracked), with the protocol it was scored under."""
    import argparse
    import json

    snaps = [(m, 60.0 * m, 10 * m, object(), None) for m in (1, 2)]
    monkeypatch.setattr(fashion, "train_with_snapshots", lambda *a: (load_config("gan-mnist"), snaps,
                                                                   {"steps": 20, "images_per_s": 5.0, "num_classes": 0}))
    monkeypatch.setattr(fashion, "score", lambda cfg, G, n, metrics, k: {"fid": 7.5, "kid": 0.1})
    monkeypatch.setattr(fashion, "save_grid", lambda *a: None)
    args = argparse.Namespace(minutes=2.0, marks=[1.0, 2.0], threads=1, n=500, metrics="fid,kid", out=tmp_path)
    fashion.run_one("gan-mnist", 3, args)
    fashion.run_one("gan-mnist", 4, args)
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["mark_min"]) for r in rows] == [(3, 1), (3, 2), (4, 1), (4, 2)]
    assert {(r["minutes"], r["n"], r["split"], r["features"], r["fid"]) for r in rows} == {(2.0, 500, "test", "domain", 7.5)}
    assert fashion.done(tmp_path, "gan-mnist", 3, 2.0) and not fashion.done(tmp_path, "gan-mnist", 3, 5.0)
    assert not fashion.done(tmp_path, "gan-mnist", 5, 2.0)


@pytest.fixture(scope="module")
def git_ignored(tmp_path_factory):
    """Whether the project's .gitignore ignores a path: asked of git in a fresh repository holding only that
    file, so the answer is the file's, in a source tarball as in a checkout."""
    import shutil
    import subprocess

    repo = tmp_path_factory.mktemp("ignore")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return lambda path: subprocess.run(["git", "check-ignore", "-q", path], cwd=repo).returncode == 0


@pytest.mark.parametrize("path", ["benchmarks/results/fashion/rows.jsonl", "benchmarks/results/fashion/runs/x-seed0.json",
                                  "benchmarks/results/translation/pix2pix-seed0/eval.json",
                                  "benchmarks/results/translation/runs/pix2pix-seed0/eval.json"])
def test_no_benchmark_raw_result_is_ignored_by_git(git_ignored, path):
    assert not git_ignored(path)


def test_training_run_folders_stay_ignored(git_ignored):
    assert git_ignored("runs/fast-fashion-mnist/config.yaml")
    assert git_ignored("runs/benchmarks/translation/pix2pix-seed0/checkpoints/last.safetensors")


def test_translation_keeps_a_run_s_raw_files_but_not_its_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in (*translation.KEPT, "checkpoints/step1.safetensors"):
        (run / name).write_text(name)
    translation.keep_raw(run, tmp_path / "out" / "pix2pix-seed0")
    kept = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert kept == sorted(f"pix2pix-seed0/{n}" for n in translation.KEPT)
    assert (tmp_path / "out" / "pix2pix-seed0" / "eval.json").read_text() == "eval.json"


def _help(script: str) -> str:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return " ".join(p.stdout.split())


def test_audio_spectrogram_help_does_not_run_the_benchmark():
    out = _help("audio_spectrogram")
    assert out.startswith("usage:") and "| signal |" not in out and "--json" in out


@pytest.mark.parametrize("script,default", [("audio_spectrogram", "benchmarks/results/audio/spectrogram.json"),
                                            ("precision_quality", "benchmarks/results/precision_quality.json"),
                                            ("scaling", "benchmarks/results/scaling.json"),
                                            ("health_overhead", "benchmarks/results/health_overhead.json"),
                                            ("speed", "benchmarks/results/speed.jsonl")])
def test_a_benchmark_that_prints_a_table_writes_its_raw_results_by_default(script, default):
    assert f"default {default}" in _help(script)


def test_precision_quality_help_gives_the_whole_description():
    out = _help("precision_quality")
    assert "in fp32 and with ``train.precision`` auto (bf16 on this CPU), over several seeds." in out
