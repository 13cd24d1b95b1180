"""gankit eval: score runs or .npz files of samples; prints a table and writes eval.json."""


def register(sub):
    from ..metrics import FEATURES, METRICS
    from ..metrics.evaluate import DEFAULT_N

    p = sub.add_parser(
        "eval", help="evaluate runs or .npz samples (FID, KID, IS, precision/recall, ...)",
        description="Evaluate generated samples against real data. SOURCE is a run folder (samples are drawn "
                    "from its checkpoint) or an .npz with x: (N, C, H, W) floats in [-1, 1] or (N, D), and "
                    "optional y: (N,) labels (then give --data). Prints one column per SOURCE; numbers share a "
                    "row only when their evaluation cards match. A model that scores itself on real data (ssgan: its "
                    "classifier's accuracy on --split) adds those numbers, each with its card. Writes RUN_DIR/eval.json "
                    "(NAME.eval.json beside an .npz).")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="run folder or .npz file (several to compare)")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated, from: {','.join(METRICS.names())} "
                        "(default: fid,kid,is,pr,dc for images; modes,fid,kid,pr,dc for 1D/2D data)")
    p.add_argument("-n", type=int, default=DEFAULT_N, help=f"generated samples (default {DEFAULT_N}); "
                   "as many real ones are drawn from --split")
    p.add_argument("--features", choices=FEATURES.names(), default=None,
                   help="feature extractor (default: domain for images, raw for 1D/2D data)")
    p.add_argument("--inception-weights", metavar="PATH", default=None,
                   help="pt_inception-2015-12-05 weights file for --features inception "
                        "(or set $GANKIT_INCEPTION_WEIGHTS)")
    p.add_argument("--split", default="test", choices=["test", "train"], help="reference split (default test)")
    p.add_argument("--data", default=None, help="dataset the samples imitate (required for .npz; "
                   "for a run it defaults to the run's dataset)")
    p.add_argument("--data-root", default=None, help="folder of the dataset's files, when it needs one (--data folder: "
                   "read at the samples' own channels and resolution)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated noise and of the real subset")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"], help="checkpoint of a run")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: PyTorch's; 1 is fastest on a shared, busy CPU)")
    p.add_argument("--no-write", action="store_true", help="do not write eval.json")
    p.set_defaults(func=run)


def _is_translation_run(src: str) -> bool:
    from pathlib import Path

    import yaml

    cfg = Path(src) / "config.yaml"
    if not cfg.exists():
        return False
    data = yaml.safe_load(cfg.read_text()) or {}
    from ..objectives import OBJECTIVES

    name = (data.get("loss") or {}).get("objective", "gan")
    return name in OBJECTIVES and OBJECTIVES.get(name).kind == "translation"


def _translation_metrics(args) -> tuple:
    """The feature metrics a translator is scored with (PSNR/SSIM and the model's own scores always come
    with paired data); options only generator evaluation has are refused, not ignored."""
    from ..errors import GankitError
    from ..metrics.translation import FEATURE_METRICS

    if args.features not in (None, "domain", "inception"):
        raise GankitError(f"--features {args.features}: a translator is scored with domain or inception features")
    if args.data or args.data_root:
        raise GankitError("--data and --data-root are for generators: a translator is scored on its own held-out split")
    if args.metrics is None:
        return FEATURE_METRICS
    names = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    wrong = [m for m in names if m not in FEATURE_METRICS]
    if wrong:
        raise GankitError(f"--metrics {','.join(wrong)}: a translator is scored with {','.join(FEATURE_METRICS)} "
                          "(and PSNR/SSIM where the data is paired)")
    return names


def run(args):
    from ..evaluation import evaluate
    from ..metrics import format_table
    from ..metrics.evaluate import DEFAULT_N

    columns = []
    for src in args.sources:
        if _is_translation_run(src):
            from ..evaluation import evaluate_translation
            from ..metrics.translation import format_translation
            n = None if args.n == DEFAULT_N else args.n  # a translator is scored on the whole held-out split
            results = evaluate_translation(src, split=args.split, n=n, seed=args.seed, checkpoint=args.checkpoint,
                                           write=not args.no_write, metrics=_translation_metrics(args),
                                           features=args.features, inception_weights=args.inception_weights)
            print(f"{src} (translation, {args.split} split)")
            print(format_translation(results))
            if "not_computed" in results["protocol"]:
                print(f"not computed: {results['protocol']['not_computed']}")
            continue
        result = evaluate(src, metrics=args.metrics, n=args.n, features=args.features, split=args.split,
                          data=args.data, data_root=args.data_root, seed=args.seed,
                          inception_weights=args.inception_weights, checkpoint=args.checkpoint,
                          write=not args.no_write, threads=args.threads)
        label = result.source.get("label", src)
        if result.source.get("kind") == "run":
            label += f"@{result.source.get('step')}"
        columns.append((label, result.results))
        if result.path is not None:
            print(f"wrote {result.path}  ({result.seconds.get('total', 0):.1f} s)")
    if columns:
        print(format_table(columns))
