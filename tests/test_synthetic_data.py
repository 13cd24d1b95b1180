"""data.subset_fraction (gankit/data/subsets.py) and the synthetic-data benchmark's fixed subsets."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from gankit.config import DataConfig, load_config
from gankit.data import load_dataset, stratified_subset
from gankit.data.subsets import index_hash
from gankit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def unbalanced_labels() -> torch.Tensor:
    """Classes of 100, 37, 250 and 13 samples, shuffled."""
    y = torch.cat([torch.full((n,), c) for c, n in enumerate((100, 37, 250, 13))])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(5))]


def test_balanced_classes_get_exactly_the_same_count():
    y = torch.arange(10).repeat(600)  # 6,000 samples, 600 per class
    for fraction, per_class in ((0.01, 6), (0.1, 60), (0.5, 300), (1.0, 600)):
        idx = stratified_subset(y, fraction, seed=3)
        assert torch.bincount(y[idx], minlength=10).tolist() == [per_class] * 10
        assert len(idx) == round(fraction * 6000) and len(set(idx.tolist())) == len(idx)
        assert torch.equal(idx, idx.sort().values)


def test_unbalanced_classes_by_largest_remainder():
    y = unbalanced_labels()  # 400 samples
    idx = stratified_subset(y, 0.1, seed=0)
    # quotas 10, 3.7, 25, 1.3: floors 10 + 3 + 25 + 1 = 39, the missing one goes to class 1 (remainder .7)
    assert torch.bincount(y[idx], minlength=4).tolist() == [10, 4, 25, 1]
    idx = stratified_subset(y, 0.29, seed=0)  # 116 = 29 + 10.73 + 72.5 + 3.77: floors 114, +1 for classes 3 and 1
    assert torch.bincount(y[idx], minlength=4).tolist() == [29, 11, 72, 4]


def test_same_seed_same_indices_another_seed_others():
    y = unbalanced_labels()
    a, b, c = (stratified_subset(y, 0.2, seed=s) for s in (7, 7, 8))
    assert torch.equal(a, b) and index_hash(a) == index_hash(b)
    assert not torch.equal(a, c) and index_hash(a) != index_hash(c)
    assert set(a.tolist()) <= set(stratified_subset(y, 0.5, seed=7).tolist())  # nested for one seed


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1"])
def test_out_of_range_fraction_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"^data\.subset_fraction: .*\(0, 1\]"):
        load_config("cgan-fashion-mnist", [f"data.subset_fraction={value}"])


def test_a_limit_beside_a_subset_is_refused():
    """data.limit would cut the class-balanced subset unevenly: one of the two says which images."""
    with pytest.raises(ConfigError, match="^data.limit: data.subset_fraction already chooses the training images"):
        load_config("cgan-fashion-mnist", ["data.subset_fraction=0.1", "data.limit=50"])


def test_the_loop_trains_on_the_subset_of_the_train_split_only(tmp_path):
    from gankit.train.run import train

    cfg = load_config("dcgan-digits", ["data.subset_fraction=0.25", "data.subset_seed=4", "train.steps=1",
                                       "train.threads=1", "health.enabled=false", "train.batch_size=16",
                                       "train.checkpoint_minutes=null", "train.sample_every=1"])
    run = train(cfg, out=tmp_path / "run", quiet=True)
    full = load_dataset(DataConfig(name=cfg.data.name, resolution=cfg.data.resolution, channels=cfg.data.channels))
    idx = stratified_subset(full.y, 0.25, 4)
    data = run.trainer.data
    assert len(data) == len(idx) == round(0.25 * len(full)) < len(full)
    assert torch.equal(data.x.cpu(), full.x[idx]) and torch.equal(data.y.cpu(), full.y[idx])
    assert data.info["subset"]["sha256_16"] == index_hash(idx)
    test = load_dataset(cfg.data, "test")  # the test split is never cut
    assert len(test) == len(load_dataset(DataConfig(name=cfg.data.name), "test"))


def test_every_arm_of_a_seed_uses_the_same_subsets(tmp_path):
    spec = importlib.util.spec_from_file_location("synthetic_data", ROOT / "benchmarks" / "synthetic_data.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "results"
    bench.main(["--seeds", "1", "--g-steps", "2", "--sweep", "20", "40", "--sweep-all", "20", "--cas-n", "30",
                "--clf-epochs", "0.05", "--clf-min-steps", "1", "--test-limit", "200", "--skip-all-real",
                "--extra", "balanced", "filtered-balanced", "pseudo-real", "--extra-sweep", "1200", "--filter-pool", "1500",
                "--no-grids", "--keep", str(tmp_path / "runs"), "--out", str(out), "--curve", str(tmp_path / "c.png")])
    rec = json.loads((out / "seed1.json").read_text())
    train_y = load_dataset(DataConfig(name="fashion-mnist"), "train").y
    one = stratified_subset(train_y, 0.01, 1)
    assert rec["subsets"]["1%"]["index"] == one.tolist() and rec["subsets"]["1%"]["per_class"] == [60] * 10
    assert rec["subsets"]["10%"]["sha256_16"] == index_hash(stratified_subset(train_y, 0.1, 1))
    arms = {a["arm"]: a for a in rec["arms"]}
    assert set(arms) == {"real-1%", "real-10%", "1% + 20 G-sub", "1% + 40 G-sub", "1% + 20 G-all", "CAS G-all (30)",
                         "1% + 1200 G-sub balanced", "1% + 1200 G-sub filtered-balanced", "1% + 1200 pseudo-real"}
    on_1 = [a for a in rec["arms"] if a["subset"] == "1%"]
    assert len(on_1) == 7 and {a["subset_sha256_16"] for a in on_1} == {index_hash(one)}
    assert [arms[k]["train_n"] for k in ("real-1%", "1% + 20 G-sub", "1% + 40 G-sub", "1% + 20 G-all")] == \
        [600, 620, 640, 620]
    assert arms["1% + 1200 G-sub balanced"]["train_n"] == 2 * 600 + 1200  # the 600 real twice
    # pseudo-real: 1,200 of the 59,400 images outside the subset, labelled by real-1%'s classifier
    assert arms["1% + 1200 pseudo-real"]["train_n"] == 2 * 600 + 1200
    assert rec["generators"]["pseudo-real"]["pool"] == 60000 - 600
    assert 0 <= arms["1% + 1200 pseudo-real"]["pseudo_label_accuracy"] <= 1
    kept = rec["generators"]["G-sub-filtered"]["kept_per_class"]
    assert arms["1% + 1200 G-sub filtered-balanced"]["n_generated"] == sum(min(k, 120) for k in kept)
    assert rec["generators"]["G-sub"]["subset_sha256_16"] == index_hash(one)  # G-sub saw only those images
    assert rec["generators"]["G-sub"]["train_images"] == 600
    assert rec["generators"]["G-all"]["subset_sha256_16"] is None
    assert rec["generators"]["G-all"]["train_images"] == 60000
    assert (out / "table.md").exists() and (tmp_path / "c.png").exists()
