"""Synthetic training data (issue 19): does a conditional GAN's output help a classifier with few labels?

    python benchmarks/synthetic_data.py [--seeds 0 1 2] [--g-steps 1200] [--sweep 600 2000 6000 20000]
                                        [--extra balanced filtered-balanced]
    python benchmarks/synthetic_data.py --report-only      # table + curve from the raw results

One fixed classifier (gankit's DomainNet with the CAS recipe of gankit/metrics/cas.py: AdamW one-cycle,
3 epochs, at least 400 steps, batch 128, no augmentation, one thread) is trained per arm and scored on the
whole Fashion-MNIST test split (10,000 images). Per seed s, every arm uses seed s for the classifier's
initial weights and batch order, and the same stratified subsets of the 60,000 training images
(gankit.data.stratified_subset(y, fraction, s): exactly 1 % = 600 = 60 per class, 10 % = 6,000):

    all-real          the 60,000 labelled training images
    real-1% / 10%     the subset alone
    1% + N G-sub      the 1 % subset + N samples of a cGAN trained on that subset only (no other label seen)
    1% + N G-all      the 1 % subset + N samples of a cGAN trained on all 60,000 labels (leaks labels: reference)
    CAS G-all         --cas-n samples of G-all alone (Classification Accuracy Score, Ravuri & Vinyals 2019)
    --extra arms      other ways to add G-sub's samples (N from --extra-sweep), still knowing only the 600 labels:
                      balanced (the 600 real repeated round(N / 600) times, so real and generated weigh alike),
                      filtered (only samples that real-1%'s classifier assigns the label G was asked for,
                      N / 10 per class), filtered-balanced (both);
                      pseudo-real: no generator — N of the 59,400 *real* unlabelled training images, labelled by
                      real-1%'s classifier, the 600 real repeated round(N / 600) times. What any generator
                      trained on the 600 labels plus pseudo-labels could add at best: its samples can be no
                      closer to the data than the data itself (self-training, one round).

Both generators are the recipe cgan-fashion-mnist (DCGAN G with a label embedding, projection D) with the
same settings (--g-set: DiffAugment colour/translation/cutout, EMA) for --g-steps G steps, seed s, one thread;
G-sub gets data.subset_fraction=0.01 data.subset_seed=s, so it trains on exactly the classifier's 600 images.
Generated samples come from the EMA weights with balanced classes (labels cycle 0..9) and noise seed 1000 + s.

Raw results: benchmarks/results/synthetic_data/seed<s>.json (every arm with the SHA-256 of the real subset
it used, the 1 % indices in full, timings), summary.json, table.md, and docs/synthetic-data-curve.png.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from stats import mean_std  # noqa: E402  (benchmarks/stats.py)

RESULTS = ROOT / "benchmarks" / "results" / "synthetic_data"
CURVE = ROOT / "docs" / "synthetic-data-curve.png"
RECIPE = "cgan-fashion-mnist"
G_SET = ["loss.augment=color,translation,cutout", "train.ema=0.995"]
SUBSET = 0.01    # the headline labelled subset
SUBSET_10 = 0.10
SAMPLE_SEED = 1000  # generated samples of seed s use noise seed SAMPLE_SEED + s
EXTRA = ("balanced", "filtered", "filtered-balanced", "pseudo-real")
G_EXTRA = EXTRA[:3]   # the extra arms that add G-sub's samples


def generator_overrides(seed: int, steps: int, subset: bool, extra=()) -> list:
    """The config overrides of one generator run: G-sub (``subset``: the 1 % subset of seed ``seed``) or G-all."""
    ov = [f"seed={seed}", f"train.steps={steps}", "train.epochs=null", "train.threads=1", "train.minutes=null",
          "health.enabled=false", "train.checkpoint_minutes=null", f"train.checkpoint_every={steps}",
          f"train.sample_every={steps}", "train.log_every=200", *G_SET, *extra]
    if subset:
        ov += [f"data.subset_fraction={SUBSET}", f"data.subset_seed={seed}"]
    return ov


def train_generator(seed: int, steps: int, subset: bool, out: Path, extra=(), reuse: bool = False) -> tuple:
    """Train one generator (``reuse``: load the finished run in ``out``); returns (api model, record with the
    config, the data subset's hash, seconds)."""
    from gankit.api import load
    from gankit.config import load_config
    from gankit.train.run import train

    overrides = generator_overrides(seed, steps, subset, extra)
    cfg = load_config(RECIPE, overrides)
    if reuse:  # a finished run of exactly this config (--reuse): load it, train nothing
        from gankit.data import load_dataset

        model = load(out)
        if model.cfg != cfg:
            raise RuntimeError(f"--reuse {out}: that run's config is not {RECIPE} with {overrides}")
        data = load_dataset(cfg.data, "train", seed=cfg.seed)
        return model, {"recipe": RECIPE, "overrides": overrides, "reused": str(out), "train_images": len(data),
                       "subset_sha256_16": data.info.get("subset", {}).get("sha256_16")}
    tic = time.monotonic()
    run = train(cfg, out=out, quiet=True)
    seconds = time.monotonic() - tic
    data = run.trainer.data
    rec = {"recipe": RECIPE, "overrides": overrides, "train_seconds": round(seconds, 1),
           "steps": run.trainer.state.step, "train_images": len(data),
           "subset_sha256_16": data.info.get("subset", {}).get("sha256_16")}
    return load(out), rec


class Classifier:
    """The one classifier recipe every arm uses (CAS's: gankit/metrics/cas.py), scored on the test split."""

    def __init__(self, x_test, y_test, num_classes: int, epochs: float, min_steps: int):
        self.x_test, self.y_test, self.num_classes = x_test, y_test, num_classes
        self.epochs, self.min_steps = epochs, min_steps

    def steps(self, n: int) -> int:
        return max(int(self.epochs * n / min(128, n)), self.min_steps)  # fit_classifier's rule, batch 128

    def score(self, x, y, seed: int) -> dict:
        import torch

        from gankit.metrics.cas import _classifier
        from gankit.metrics.domain_net import accuracy, fit_classifier

        tic = time.monotonic()
        torch.manual_seed(seed)
        net = _classifier(tuple(x.shape[1:]), self.num_classes)
        fit_classifier(net, x.float(), y.long(), self.epochs, seed=seed, min_steps=self.min_steps)
        acc = accuracy(net, self.x_test, self.y_test)
        self.last_net = net  # the filtered arms label-check generated samples with real-1%'s classifier
        return {"accuracy": acc, "train_n": len(x), "clf_steps": self.steps(len(x)),
                "seconds": round(time.monotonic() - tic, 1)}


def run_seed(seed: int, args, base: Path, log=print) -> dict:
    """Every arm of one seed; returns the raw record (what seed<s>.json holds)."""
    import torch

    from gankit.config import DataConfig
    from gankit.data import index_hash, load_dataset, stratified_subset, to_model_range

    train_ds = load_dataset(DataConfig(name="fashion-mnist"), "train")
    test_ds = load_dataset(DataConfig(name="fashion-mnist"), "test")
    x_test, y_test = to_model_range(test_ds.x), test_ds.y
    if args.test_limit:
        x_test, y_test = x_test[:args.test_limit], y_test[:args.test_limit]
    clf = Classifier(x_test, y_test, train_ds.num_classes, args.clf_epochs, args.clf_min_steps)
    x_all, y_all = to_model_range(train_ds.x), train_ds.y
    subsets = {name: stratified_subset(y_all, frac, seed) for name, frac in (("1%", SUBSET), ("10%", SUBSET_10))}
    rec = {"seed": seed, "test_images": len(y_test), "classifier": {
               "net": "gankit.metrics.domain_net.DomainNet (via gankit.metrics.cas._classifier)",
               "recipe": "fit_classifier: AdamW lr 3e-3 wd 1e-4, one-cycle, batch 128, no augmentation",
               "epochs": args.clf_epochs, "min_steps": args.clf_min_steps, "init_and_batch_seed": seed},
           "subsets": {name: {"rule": f"gankit.data.stratified_subset(train.y, {frac}, seed={seed})",
                              "n": len(idx), "sha256_16": index_hash(idx),
                              "per_class": torch.bincount(y_all[idx], minlength=10).tolist()}
                       for (name, idx), frac in zip(subsets.items(), (SUBSET, SUBSET_10))},
           "arms": [], "generators": {}}
    rec["subsets"]["1%"]["index"] = subsets["1%"].tolist()

    def arm(name, x, y, subset=None, generator=None, n_generated=0):
        r = {"arm": name, "subset": subset, "subset_sha256_16": rec["subsets"][subset]["sha256_16"] if subset else None,
             "generator": generator, "n_generated": n_generated, **clf.score(x, y, seed)}
        rec["arms"].append(r)
        log(f"seed {seed}: {name:<22} {100 * r['accuracy']:6.2f}%  (n={r['train_n']}, {r['clf_steps']} steps, "
            f"{r['seconds']:.0f} s)")
        return r

    only_extra = args.only_extra
    if not (args.skip_all_real or only_extra):
        arm("all-real", x_all, y_all)
    for name, idx in subsets.items():
        if not only_extra or name == "1%":
            arm(f"real-{name}", x_all[idx], y_all[idx], subset=name)
        if name == "1%":
            sub_net = clf.last_net  # real-1%'s classifier: the filter of G-sub's samples
    x_sub, y_sub = x_all[subsets["1%"]], y_all[subsets["1%"]]
    if "pseudo-real" in args.extra:
        rest = torch.ones(len(y_all), dtype=torch.bool)
        rest[subsets["1%"]] = False
        x_rest, y_rest = x_all[rest], y_all[rest]   # y_rest: only to report the pseudo-labels' accuracy
        sub_net.eval()
        with torch.inference_mode():
            pseudo = torch.cat([sub_net(x_rest[i:i + 2000])[1].argmax(1) for i in range(0, len(x_rest), 2000)])
        order = torch.randperm(len(x_rest), generator=torch.Generator().manual_seed(seed))
        rec["generators"]["pseudo-real"] = {
            "rule": "the first N of a permutation (seed s) of the train images outside the 1 % subset, labelled by "
                    "real-1%'s classifier (argmax); the 600 real repeated round(N / 600) times",
            "pool": len(x_rest), "pseudo_label_accuracy": round((pseudo == y_rest).float().mean().item(), 4)}
        for n in args.extra_sweep:
            k = order[:n]
            copies = max(1, round(n / len(y_sub)))
            arm(f"1% + {n} pseudo-real", torch.cat([x_sub.repeat(copies, 1, 1, 1), x_rest[k]]),
                torch.cat([y_sub.repeat(copies), pseudo[k]]), subset="1%", generator="pseudo-real", n_generated=n)
            rec["arms"][-1]["real_copies"] = copies
            rec["arms"][-1]["pseudo_label_accuracy"] = round((pseudo[k] == y_rest[k]).float().mean().item(), 4)
    gens = [("G-sub", True, args.sweep, args.cas_n_sub), ("G-all", False, args.sweep_all, args.cas_n)]
    if only_extra:
        gens = gens[:1] if any(e in G_EXTRA for e in args.extra) else []
    for gname, subset_only, sweep, cas_n in gens:
        model, grec = train_generator(seed, args.g_steps, subset_only, base / f"{gname}-s{seed}", args.g_set,
                                      reuse=args.reuse is not None)
        if subset_only and grec["subset_sha256_16"] != rec["subsets"]["1%"]["sha256_16"]:
            raise RuntimeError(f"{gname} trained on subset {grec['subset_sha256_16']}, "
                               f"not the classifier's {rec['subsets']['1%']['sha256_16']}")
        rec["generators"][gname] = grec
        if not only_extra:
            n_max = max([*sweep, cas_n, 100])
            tic = time.monotonic()
            x_gen, y_gen = model.sample(n_max, seed=SAMPLE_SEED + seed)
            grec["sample_seconds"] = round(time.monotonic() - tic, 1)
            log(f"seed {seed}: {gname} trained in {grec.get('train_seconds', 0):.0f} s ({grec['train_images']} "
                f"images), {n_max} samples in {grec['sample_seconds']:.0f} s")
            grid(args, seed, gname, x_gen, y_gen)
            for n in sweep:
                arm(f"1% + {n} {gname}", torch.cat([x_sub, x_gen[:n]]), torch.cat([y_sub, y_gen[:n]]),
                    subset="1%", generator=gname, n_generated=n)
            if cas_n:
                arm(f"CAS {gname} ({cas_n})", x_gen[:cas_n], y_gen[:cas_n], generator=gname, n_generated=cas_n)
            del x_gen, y_gen
        if subset_only and any(e in G_EXTRA for e in args.extra):
            x_f, y_f = x_pool, y_pool = model.sample(args.filter_pool, seed=SAMPLE_SEED + seed)
            if any(e.startswith("filtered") for e in args.extra):
                keep, frec = agree(sub_net, x_pool, y_pool)
                x_f, y_f = x_pool[keep], y_pool[keep]
                frec["filter_classifier_accuracy"] = rec["arms"][[a["arm"] for a in rec["arms"]].index("real-1%")][
                    "accuracy"]
                rec["generators"]["G-sub-filtered"] = frec
                log(f"seed {seed}: G-sub samples kept by the real-1% classifier: {frec['kept']}/{frec['drawn']} "
                    f"(per class {frec['kept_per_class']})")
                grid(args, seed, "G-sub-filtered", x_f, y_f)
            for extra in [e for e in args.extra if e in G_EXTRA]:
                xg, yg = (x_f, y_f) if extra.startswith("filtered") else (x_pool, y_pool)
                for n in args.extra_sweep:
                    k = balanced_first(yg, n, 10)
                    copies = max(1, round(len(k) / len(y_sub))) if extra.endswith("balanced") else 1
                    arm(f"1% + {n} G-sub {extra}", torch.cat([x_sub.repeat(copies, 1, 1, 1), xg[k]]),
                        torch.cat([y_sub.repeat(copies), yg[k]]), subset="1%", generator=f"G-sub-{extra}",
                        n_generated=len(k))
                    rec["arms"][-1]["real_copies"] = copies
        del model
    return rec


def balanced_first(y, n: int, num_classes: int):
    """Indices of the first n / num_classes samples of each class (fewer where a class has fewer)."""
    import torch

    return torch.cat([torch.nonzero(y == c).flatten()[:n // num_classes] for c in range(num_classes)]).sort().values


def agree(net, x, y) -> tuple:
    """Which generated samples ``net`` (real-1%'s classifier: it knows only the 1 % labels) classifies
    as their conditioning label: a sample whose class the generator failed to render is dropped."""
    import torch

    net.eval()
    with torch.inference_mode():
        pred = torch.cat([net(x[i:i + 1000])[1].argmax(1) for i in range(0, len(x), 1000)])
    keep = pred == y
    return keep, {"rule": "keep a G-sub sample when real-1%'s classifier predicts its conditioning label; "
                          "then the first N/10 kept of each class", "drawn": len(y), "kept": int(keep.sum()),
                  "kept_per_class": torch.bincount(y[keep], minlength=10).tolist()}


def grid(args, seed: int, name: str, x, y) -> None:
    """Seed 0's 10 x 10 grid of a generator's samples, one class per row."""
    import torch

    if seed != args.seeds[0] or args.no_grids:
        return
    from gankit.viz.grids import save_image_grid

    order = torch.cat([torch.nonzero(y[:2000] == c).flatten()[:10] for c in range(10)])
    save_image_grid(x[order], args.out / "grids" / f"{name}-seed{seed}.png", nrow=10)


def by_arm(rows: list) -> dict:
    """arm name -> [accuracy (%) of each seed], in the order the arms first appear."""
    out = {}
    for r in rows:
        for a in r["arms"]:
            out.setdefault(a["arm"], []).append(100 * a["accuracy"])
    return out


def report(rows: list, command: str, out: Path) -> str:
    arms = by_arm(rows)
    seeds = [r["seed"] for r in rows]
    base = arms.get("real-1%", [])
    lines = [f"Fashion-MNIST test accuracy (%, {rows[0]['test_images']} test images), one DomainNet classifier "
             f"recipe for every arm, seeds {seeds}; mean ± std", "",
             "| arm | mean ± std | gain over real-1% (points) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|---|" + "---|" * len(seeds)]
    for name, v in arms.items():
        gain = mean_std([a - b for a, b in zip(v, base)]) if name.startswith("1% +") and len(v) == len(base) else ""
        lines.append(f"| {name} | {mean_std(v)} | {gain} | " + " | ".join(f"{x:.2f}" for x in v) + " |")
    if "all-real" in arms:
        real = statistics.mean(arms["all-real"])
        for name, v in arms.items():
            if name.startswith("CAS"):
                lines.append(f"\n{name}: {statistics.mean(v) / real:.1%} of the all-real accuracy (target >= 80 %)")
    text = "\n".join(lines) + "\n"
    runs = [f"- `{c}`" for c in dict.fromkeys(c for r in rows for c in (r.get("command"), r.get("extra_command"),
                                                                         *(x["command"] for x in r.get("extra_runs", [])))
                                             if c)]
    (out / "table.md").write_text(text + "\ncommands (seed<s>.json records which made each seed):\n\n"
                                  + "\n".join(runs) + "\n")
    return text


def plot(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = by_arm(rows)
    fig, ax = plt.subplots(figsize=(7.5, 5.6))
    base = arms.get("real-1%")
    labels = {"G-sub": "cGAN trained on the 600 labelled images",
              "G-sub-balanced": "the same, the 600 real repeated to as many as the generated",
              "G-sub-filtered": "the same, samples kept if real-1%'s classifier agrees",
              "G-sub-filtered-balanced": "the same, filtered and balanced",
              "G-all": "cGAN trained on all 60,000 labels (leaks labels)",
              "pseudo-real": "no G: real unlabelled images, pseudo-labelled by real-1% (a ceiling)"}
    for gname, colour in (("G-sub", "tab:blue"), ("G-sub-balanced", "tab:cyan"), ("G-sub-filtered", "tab:green"),
                          ("G-sub-filtered-balanced", "tab:olive"), ("G-all", "tab:orange"),
                          ("pseudo-real", "tab:purple")):
        pts = sorted((a["n_generated"], name) for name in arms for r in rows[:1] for a in r["arms"]
                     if a["arm"] == name and a["generator"] == gname and a["subset"] == "1%")
        if not pts:
            continue
        ns = [0] + [n for n, _ in pts]
        vals = [base] + [arms[name] for _, name in pts]
        m = [statistics.mean(v) for v in vals]
        s = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        ax.errorbar([max(n, 200) for n in ns], m, yerr=s, marker="o", capsize=3, color=colour, label=labels[gname])
    for name, style in (("all-real", "k--"), ("real-10%", "k:"), ("real-1%", "k-.")):
        if name in arms:
            ax.axhline(statistics.mean(arms[name]), color="k", linestyle=style[1:],
                       label=f"{name} ({statistics.mean(arms[name]):.1f} %)")
    if base:
        ax.axhline(statistics.mean(base) + 2, color="tab:red", linestyle=":", alpha=0.7, label="target: real-1% + 2 points")
    ax.set_xscale("log")
    ax.set_xlabel("generated samples added to the 600 real (N; N = 0 drawn at 200)")
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title(f"1 % labels + N generated, mean ± std over {len(rows)} seeds")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--g-steps", type=int, default=1200, help="G steps of each generator")
    ap.add_argument("--g-set", nargs="*", default=[], help="further config overrides for both generators")
    ap.add_argument("--sweep", type=int, nargs="+", default=[600, 2000, 6000, 20000],
                    help="N generated samples of G-sub added to the 1 %% subset")
    ap.add_argument("--sweep-all", type=int, nargs="+", default=[600, 2000, 6000, 20000],
                    help="N generated samples of G-all added to the 1 %% subset")
    ap.add_argument("--cas-n", type=int, default=60000, help="G-all samples of the CAS arm (0: none)")
    ap.add_argument("--cas-n-sub", type=int, default=0, help="G-sub samples of a CAS arm (0: none)")
    ap.add_argument("--clf-epochs", type=float, default=None, help="default: gankit.metrics.cas.EPOCHS")
    ap.add_argument("--clf-min-steps", type=int, default=None, help="default: gankit.metrics.cas.MIN_STEPS")
    ap.add_argument("--test-limit", type=int, default=None, help="score on the first N test images (tests)")
    ap.add_argument("--skip-all-real", action="store_true", help="no all-real arm (tests)")
    ap.add_argument("--extra", nargs="*", default=[], choices=EXTRA,
                    help="further ways to add G-sub's samples: balanced (the 600 real repeated to as many as the "
                         "generated), filtered (only samples real-1%%'s classifier labels as G meant), both; "
                         "pseudo-real: real unlabelled images pseudo-labelled by real-1%%'s classifier (no G)")
    ap.add_argument("--extra-sweep", type=int, nargs="+", default=[600, 2000, 6000], help="N of the --extra arms")
    ap.add_argument("--filter-pool", type=int, default=30000, help="G-sub samples drawn for the --extra arms")
    ap.add_argument("--only-extra", action="store_true",
                    help="only real-1%% and the --extra arms, merged into OUT/seed<s>.json (with --reuse)")
    ap.add_argument("--reuse", default=None, help="load the generators from these run folders (--keep of a run)")
    ap.add_argument("--no-grids", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--curve", type=Path, default=CURVE)
    ap.add_argument("--keep", default=None, help="keep the generators' run folders here")
    ap.add_argument("--report-only", action="store_true", help="table and curve from OUT/seed*.json")
    args = ap.parse_args(argv)
    from gankit.metrics.cas import EPOCHS, MIN_STEPS

    args.clf_epochs = EPOCHS if args.clf_epochs is None else args.clf_epochs
    args.clf_min_steps = MIN_STEPS if args.clf_min_steps is None else args.clf_min_steps
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/synthetic_data.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.report_only:
        base = Path(args.reuse or args.keep or tempfile.mkdtemp(prefix="synthetic-bench-"))
        print(f"runs in {base}; generators {args.g_steps} steps; load {os.getloadavg()[0]:.1f} "
              f"(CPU shared with other jobs)", flush=True)
        for s in args.seeds:
            tic = time.monotonic()
            rec = run_seed(s, args, base, log=lambda m: print(m, flush=True))
            rec["seconds"] = round(time.monotonic() - tic, 1)
            rec["command"] = command
            if args.only_extra:  # merge the new arms into the seed's record
                old, new = json.loads((args.out / f"seed{s}.json").read_text()), rec
                assert old["subsets"]["1%"]["index"] == new["subsets"]["1%"]["index"]
                extra_gens = {f"G-sub-{e}" for e in G_EXTRA} | {"pseudo-real"}
                names = {a["arm"] for a in new["arms"] if a["generator"] in extra_gens}
                old["arms"] = [a for a in old["arms"] if a["arm"] not in names] + \
                    [a for a in new["arms"] if a["arm"] in names]
                for g in ("G-sub-filtered", "pseudo-real"):
                    if g in new["generators"]:
                        old["generators"][g] = new["generators"][g]
                old.setdefault("extra_runs", [{"command": old["extra_command"], "seconds": old.get("extra_seconds")}]
                               if old.get("extra_command") else [])
                old["extra_runs"].append({"command": command, "seconds": rec["seconds"]})
                old["extra_command"], old["extra_seconds"] = command, rec["seconds"]
                rec = old
            (args.out / f"seed{s}.json").write_text(json.dumps(rec, indent=1) + "\n")
            print(f"seed {s} done in {(time.monotonic() - tic) / 60:.1f} min", flush=True)
    rows = [json.loads(p.read_text()) for p in sorted(args.out.glob("seed*.json"))]
    if args.report_only:
        command = rows[0]["command"] if rows else command
    if not rows:
        print(f"no results in {args.out}")
        return
    print("\n" + report(rows, command, args.out))
    summary = {"seeds": [r["seed"] for r in rows], "accuracy_percent": by_arm(rows), "command": command}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if args.curve:
        plot(rows, args.curve)
    print(f"raw results: {args.out}; curve: {args.curve}")


if __name__ == "__main__":
    main()
