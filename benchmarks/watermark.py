"""The invisible watermark of ``gankit sample --watermark KEY``: false positives on real images,
detection after JPEG quality 75, a downscale by 0.5 and a 10 % crop, and its PSNR.

Image sets (each image scored alone, at its own size):

    fashion-mnist   Fashion-MNIST test images, 28×28 grey (gankit's dataset loader)
    photos-64       64×64 crops of skimage.data photographs (grey and colour)
    photos-128      128×128 crops of the same photographs
    generated       samples of fast-fashion-mnist (a DCGAN) trained here for --minutes, 28×28, watermarked
                    in the model's range by gankit.watermark.embed as `gankit sample` does

Attacks, applied to the watermarked 8-bit image: ``jpeg75`` (Pillow, quality 75), ``resize0.5``
(Pillow bicubic to half the size; the detector sees the small image), ``crop10`` (a window of 90 % of
the width and height at a random offset, i.e. 10 % cut from each dimension). ``wrong-key``: the
clean watermarked images scored with another key (a false positive if detected).

Calibration (the threshold in gankit/watermark.py): the 99th percentile of the score on *other* real
images (Fashion-MNIST training images, crops from another seed), printed as ``calibration``; the
measured false-positive rates are on the test sets above. Files of many images (a `gankit sample`
grid of 64) are judged as `gankit detect` judges them: how many of the images pass their threshold,
against the binomial chance of that many false positives; rows "files of 64" draw 2,000 random
groups of 64 of the set's images.

    python benchmarks/watermark.py                 # all sets, 1,000 real images each; ~5 min on 2 cores
    python benchmarks/watermark.py --n 200 --minutes 0.5   # a quick look
Raw results: benchmarks/results/watermark.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from gankit import watermark as W  # noqa: E402

# Rates differ from key to key (a key's pattern can match a dataset's layout a little better or
# worse than another's): image i is marked and tested with KEYS[i % len(KEYS)], so every rate is an
# average over keys; "wrong key" tests with the next one. Calibration uses other keys again.
KEYS = [f"benchmark-key-{i}" for i in range(10)]
CAL_KEYS = [f"calibration-key-{i}" for i in range(10)]


def key(i: int, shift: int = 0) -> str:
    return KEYS[(i + shift) % len(KEYS)]
ATTACKS = ("clean", "jpeg75", "resize0.5", "crop10")


def jpeg(a: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf))


def resize(a: np.ndarray, f: float = 0.5) -> np.ndarray:
    im = Image.fromarray(a)
    return np.asarray(im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                                Image.Resampling.BICUBIC))


def crop(a: np.ndarray, rng: np.random.Generator, f: float = 0.9) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = round(h * f), round(w * f)
    oy, ox = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return np.ascontiguousarray(a[oy:oy + ch, ox:ox + cw])


def attack(a: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    return {"clean": lambda: a, "jpeg75": lambda: jpeg(a), "resize0.5": lambda: resize(a),
            "crop10": lambda: crop(a, rng)}[name]()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-12)))


def fashion(split: str, n: int) -> list:
    from gankit.config import DataConfig
    from gankit.data import load_dataset

    x = load_dataset(DataConfig(name="fashion-mnist"), split).x[:n].numpy()
    return [im[0] for im in x]


def photos(size: int, n: int, seed: int) -> list:
    import skimage.data as sd

    sources = [sd.camera(), sd.astronaut(), sd.coffee(), sd.chelsea(), sd.rocket(), sd.coins(), sd.moon(),
               sd.grass(), sd.gravel(), sd.brick(), sd.immunohistochemistry(), sd.hubble_deep_field(), sd.page()]
    sources = [s for s in sources if min(s.shape[:2]) > size]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = sources[i % len(sources)]
        oy, ox = rng.integers(0, s.shape[0] - size), rng.integers(0, s.shape[1] - size)
        out.append(np.ascontiguousarray(s[oy:oy + size, ox:ox + size]))
    return out


def generated(n: int, minutes: float, work: Path) -> tuple[list, list]:
    """(unmarked, watermarked) 8-bit samples of a DCGAN trained for ``minutes`` on Fashion-MNIST."""
    import torch

    import gankit

    run = work / "dcgan"
    gankit.train("fast-fashion-mnist", [f"train.minutes={minutes}", "train.threads=2", "eval.every=null"],
                 out=run, quiet=True)
    model = gankit.load(run)
    x, _ = model.sample(n, seed=123)
    marked = torch.cat([W.embed(x[i:i + 1], key(i)) for i in range(len(x))])
    to8 = lambda t: [np.round((im[0].numpy().clip(-1, 1) + 1) * 127.5).astype(np.uint8) for im in t]  # noqa: E731
    return to8(x), to8(marked)


def evaluate(name: str, real: list, marked: list, originals: list, rng: np.random.Generator) -> dict:
    t = time.perf_counter()
    null = np.array([W.score(im, key(i)) for i, im in enumerate(real)])
    res = {"set": name, "size": list(real[0].shape[:2]), "n_real": len(real), "n_marked": len(marked),
           "null_scores": null.round(4).tolist(), "sides": {"null": min(real[0].shape[:2])},
           "psnr": [psnr(m, o) for m, o in zip(marked, originals)]}
    for a in ATTACKS:
        attacked = [attack(m, a, rng) for m in marked]
        res["sides"][a] = min(attacked[0].shape[:2])  # the detector's size class is the suspect's
        res[a] = [round(W.score(x, key(i)), 4) for i, x in enumerate(attacked)]
    res["wrong-key"] = [round(W.score(m, key(i, 1)), 4) for i, m in enumerate(marked)]
    res["sides"]["wrong-key"] = res["sides"]["clean"]
    res["seconds"] = round(time.perf_counter() - t, 1)
    return res


def rate(r: dict, which: str, k: int, rng: np.random.Generator, n_groups: int = 2000) -> float:
    """Fraction detected: each image (k = 1), or random files of k of the images judged as
    `gankit detect` judges a grid (how many pass, against the binomial chance)."""
    scores = np.asarray(r["null_scores"] if which == "null" else r[which])
    hits = scores > W.threshold(r["sides"][which])
    if k == 1:
        return float(hits.mean())
    counts = hits[rng.integers(0, len(hits), size=(n_groups, k))].sum(1)
    return float(np.mean([W.file_detected(int(c), k) for c in counts]))


def summarise(results: list, rng: np.random.Generator) -> list:
    rows = []
    for r in results:
        for k in (1, 64):
            row = {"set": r["set"], "size": "×".join(map(str, r["size"])), "images": k,
                   "psnr": float(np.mean(r["psnr"])), "fpr": rate(r, "null", k, rng),
                   "wrong_key": rate(r, "wrong-key", k, rng)}
            row.update({a: rate(r, a, k, rng) for a in ATTACKS})
            rows.append(row)
    return rows


def table(rows: list) -> str:
    head = ("| images | size | judged | PSNR (dB) | false positives | wrong key | clean | JPEG q75 | resize 0.5 "
            "| crop 10 % |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    lines = [head]
    for r in rows:
        judged = "each image" if r["images"] == 1 else "files of 64"
        lines.append(f"| {r['set']} | {r['size']} | {judged} | {r['psnr']:.1f} | {pct(r['fpr'])} | "
                     f"{pct(r['wrong_key'])} | {pct(r['clean'])} | {pct(r['jpeg75'])} | {pct(r['resize0.5'])} | "
                     f"{pct(r['crop10'])} |")
    return "\n".join(lines)


def calibrate(n: int) -> list:
    """Per size class of gankit/watermark.py (THRESHOLDS), the 99th percentile of the score of
    unmarked real images not used in the test sets."""
    sets = [[resize(x) for x in fashion("train", n)[-n // 2:]] + photos(16, n // 2, seed=93),
            fashion("train", n) + photos(28, n // 2, seed=99) + photos(40, n // 2, seed=98),
            photos(64, n, seed=97) + photos(90, n // 4, seed=96),
            photos(128, n // 4, seed=95) + photos(200, n // 8, seed=94)]
    out = []
    for images in sets:
        s = np.array([W.score(im, CAL_KEYS[i % len(CAL_KEYS)]) for i, im in enumerate(images)])
        out.append({"n": len(s), "sides": sorted({min(im.shape[:2]) for im in images}),
                    "q99": round(float(np.quantile(s, 0.99)), 3), "mean": round(float(s.mean()), 3),
                    "std": round(float(s.std()), 3)})
    return out


def key_variation(images: list, n_keys: int) -> dict:
    """Per-image false-positive rate on the same real images under ``n_keys`` other keys: a key's
    pattern can match a dataset's common layout a little better than another's."""
    rates = []
    for i in range(n_keys):
        thr = W.threshold(min(images[0].shape[:2]))
        rates.append(float(np.mean([W.score(im, f"key-{i}") > thr for im in images])))
    return {"n_keys": n_keys, "n_images": len(images), "rates": rates, "min": min(rates), "max": max(rates),
            "mean": float(np.mean(rates))}


def compare_invisible_watermark(n: int, rng: np.random.Generator) -> dict | None:
    """The `invisible-watermark` package (dwtDct, 32 bits; detected: >= 24 bits right, a false-positive
    rate of 0.35 % for random bits) on 256×256 photographs; it refuses images under 256×256."""
    try:
        from imwatermark import WatermarkDecoder, WatermarkEncoder
    except ImportError:
        return None
    bits = [int(b) for b in np.random.default_rng(7).integers(0, 2, 32)]
    enc, dec = WatermarkEncoder(), WatermarkDecoder("bits", 32)
    enc.set_watermark("bits", bits)
    rgb = [np.stack([p] * 3, -1) if p.ndim == 2 else p[..., :3] for p in photos(256, n, seed=5)]

    def found(a):
        if a.shape[:2] != (256, 256):  # it decodes only at >= 256 px: scale the attacked copy back
            a = np.asarray(Image.fromarray(a).resize((256, 256), Image.Resampling.BICUBIC))
        got = dec.decode(np.ascontiguousarray(a[..., ::-1]), "dwtDct")
        return int(sum(int(g) == b for g, b in zip(got, bits)) >= 24)

    out = {"n": len(rgb), "fpr": float(np.mean([found(p) for p in rgb])), "psnr": []}
    marked = []
    for p in rgb:
        m = np.ascontiguousarray(enc.encode(np.ascontiguousarray(p[..., ::-1]), "dwtDct")[..., ::-1])
        out["psnr"].append(psnr(m, p))
        marked.append(m)
    for a in ATTACKS:
        out[a] = float(np.mean([found(attack(m, a, rng)) for m in marked]))
    ours = evaluate("photos-256 (gankit)", rgb, [W.embed_uint8(p, key(i)) for i, p in enumerate(rgb)], rgb, rng)
    out["gankit"] = {"fpr": rate(ours, "null", 1, rng), "psnr": float(np.mean(ours["psnr"])),
                     **{a: rate(ours, a, 1, rng) for a in ATTACKS}}
    out["psnr"] = float(np.mean(out["psnr"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="real (unmarked) images per set (default 1000)")
    ap.add_argument("--marked", type=int, default=500, help="watermarked images per set (default 500)")
    ap.add_argument("--minutes", type=float, default=2.0, help="training of the DCGAN for generated images")
    ap.add_argument("--compare", type=int, default=20, help="photos for the invisible-watermark comparison (0: skip)")
    ap.add_argument("--keys", type=int, default=10, help="other keys for the false-positive rate's spread (0: skip)")
    ap.add_argument("--report-only", action="store_true",
                    help="the table again from --out's raw scores (rewrites its rows), e.g. after changing the file rule")
    ap.add_argument("--calibrate", action="store_true", help="measure CALIBRATION for gankit/watermark.py and stop")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "watermark.json"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.report_only:  # the table again from the raw scores (e.g. after changing the file rule)
        saved = json.loads(Path(args.out).read_text())
        saved["rows"] = summarise(saved["raw"], rng)
        saved["file_safety"] = W.FILE_SAFETY
        Path(args.out).write_text(json.dumps(saved, indent=1))
        print(table(saved["rows"]))
        return 0
    if args.calibrate:
        cal = calibrate(args.n)
        print(json.dumps(cal, indent=1))
        print("THRESHOLDS = (" + ", ".join(f"({b}, {c['q99']})" for (b, _), c in zip(W.THRESHOLDS, cal)) + ")")
        return 0
    results = []
    fm = fashion("test", args.n)
    results.append(evaluate("fashion-mnist", fm, [W.embed_uint8(x, key(i)) for i, x in enumerate(fm[:args.marked])],
                            fm[:args.marked], rng))
    for size, n in ((64, args.n), (128, max(1, args.n // 4))):
        ph = photos(size, n, seed=size)
        m = min(args.marked, n)
        results.append(evaluate(f"photos-{size}", ph, [W.embed_uint8(x, key(i)) for i, x in enumerate(ph[:m])],
                                ph[:m], rng))
    with tempfile.TemporaryDirectory() as tmp:
        real, marked = generated(args.n, args.minutes, Path(tmp))
    results.append(evaluate("generated (DCGAN)", real, marked[:args.marked], real[:args.marked], rng))
    for r in results:
        print(f"  {r['set']}: {r['seconds']} s", flush=True)
    rows = summarise(results, rng)
    keys = key_variation(fm, args.keys) if args.keys else None
    comparison = compare_invisible_watermark(args.compare, rng) if args.compare else None
    print(f"\nwatermark {W.METHOD}, PSNR target {W.PSNR_DB} dB, thresholds (per size class) "
          f"{W.THRESHOLDS} for a false-positive rate of {W.FALSE_POSITIVE_RATE:.0%} per image\n")
    print(table(rows))
    if keys:
        print(f"\nfalse-positive rate per image on the {keys['n_images']} Fashion-MNIST test images under "
              f"{keys['n_keys']} other keys: {100 * keys['mean']:.2f} % on average, "
              f"{100 * keys['min']:.1f} % to {100 * keys['max']:.1f} %")
    if comparison:
        c, g = comparison, comparison["gankit"]
        print(f"\n256×256 photographs, {c['n']} images: | method | PSNR | false pos. | clean | JPEG q75 | resize 0.5 "
              f"| crop 10 % |")
        for name, d in (("invisible-watermark dwtDct", c), ("gankit", g)):
            print(f"| {name} | {d['psnr']:.1f} | {100 * d['fpr']:.0f} % | " +
                  " | ".join(f"{100 * d[a]:.0f} %" for a in ATTACKS) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"method": W.METHOD, "psnr_target_db": W.PSNR_DB, "thresholds": W.THRESHOLDS,
                               "false_positive_rate": W.FALSE_POSITIVE_RATE, "file_safety": W.FILE_SAFETY,
                               "rows": rows, "keys": keys, "invisible_watermark": comparison, "raw": results,
                               "command": "python benchmarks/watermark.py " + " ".join(sys.argv[1:] if argv is None else argv)},
                              indent=1))
    print(f"\nraw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
