"""gankit truncation: FID, precision and recall against the truncation ψ (the truncation curve)."""


def register(sub):
    from ..metrics import FEATURES

    p = sub.add_parser("truncation", help="FID / precision / recall of a run's samples against truncation ψ",
                       description="Score a generation run's samples at several truncation values ψ, as gankit eval "
                                   "scores them (same features and real statistics), print a table, and write the "
                                   "plot (-o FILE.png) and the rows as JSON beside it (FILE.json). A style generator "
                                   "truncates w toward its mean; any other resamples z inside BigGAN's threshold.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--psi", default="1,0.9,0.8,0.7,0.6,0.5",
                   help="comma-separated ψ values, 0 < ψ ≤ 1; a style generator also takes 0 "
                        "(default 1,0.9,0.8,0.7,0.6,0.5)")
    p.add_argument("-n", type=int, default=10_000, help="generated samples per ψ (default 10000)")
    p.add_argument("-o", "--out", default="truncation.png", help="plot .png; the JSON goes beside it "
                   "(default truncation.png, truncation.json); an existing file of either name is replaced "
                   "only if gankit wrote it")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (the same codes at every ψ) and the real subset")
    p.add_argument("--cutoff", type=int, default=None, metavar="K",
                   help="style generators: truncate only style indices < K (default: all)")
    p.add_argument("--features", choices=FEATURES.names(), default=None,
                   help="feature extractor (default: domain for images, raw for 1D/2D data)")
    p.add_argument("--split", default="test", choices=["test", "train"], help="reference split (default test)")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    p.set_defaults(func=run)


def parse_psis(text: str) -> list:
    """``"1,0.9,0.5"`` -> [1.0, 0.9, 0.5]; a value that is not a number, or out of [0, 1], fails in one
    line (whether this generator takes 0 is checked on the model)."""
    from ..errors import GankitError

    out = []
    for part in (t.strip() for t in text.split(",")):
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise GankitError(f"--psi {text}: {part!r} is not a number; give e.g. --psi 1,0.9,0.8,0.7") from None
        if not 0 <= v <= 1:
            raise GankitError(f"--psi {text}: {part} is outside 0 ≤ ψ ≤ 1 (1 = no truncation; 0 only for a "
                              "style generator)")
        out.append(v)
    if not out:
        raise GankitError("--psi: give at least one ψ, e.g. --psi 1,0.9,0.8,0.7,0.6,0.5")
    return out


def run(args):
    from pathlib import Path

    from ..errors import GankitError
    from ..steer.truncation import format_curve, truncation_curve

    if args.n < 2:
        raise GankitError(f"-n {args.n}: need at least 2 samples")
    rows = truncation_curve(args.run_dir, parse_psis(args.psi), n=args.n, seed=args.seed, out=args.out,
                            split=args.split, features=args.features, cutoff=args.cutoff, which=args.checkpoint,
                            threads=args.threads, quiet=False)
    print(format_curve(rows))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
