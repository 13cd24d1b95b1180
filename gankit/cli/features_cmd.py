"""gankit features: list feature extractors, train and cache a dataset's domain classifier."""


def register(sub):
    p = sub.add_parser("features", help="list feature extractors; train a dataset's feature network",
                       description="Feature networks used by `gankit eval`. `list` shows the extractors and "
                                   "the cached domain networks; `train DATASET` trains (or retrains) the "
                                   "small CNN classifier of a dataset and prints its test accuracy.")
    fsub = p.add_subparsers(dest="action", metavar="ACTION")
    fsub.required = True
    ls = fsub.add_parser("list", help="extractors and cached networks")
    ls.set_defaults(func=run_list)
    tr = fsub.add_parser("train", help="train and cache the domain feature network of DATASET")
    tr.add_argument("dataset", metavar="DATASET", help="e.g. fashion-mnist, mnist, mnist-5k, digits")
    tr.add_argument("--data-root", default=None, help="folder of the dataset's files, when it needs one")
    tr.add_argument("--epochs", type=float, default=None, help="passes over the train split (default per dataset)")
    tr.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    tr.add_argument("--seed", type=int, default=0)
    tr.set_defaults(func=run_train)


def run_list(args):
    from ..metrics import FEATURES
    from ..metrics.cache import cache_dir, load_tensors
    from ..metrics.domain_net import weights_sha256

    print("extractors:")
    for name, factory in FEATURES.items():
        doc = (factory.__doc__ or "").strip().splitlines()
        print(f"  {name:<10} {doc[0] if doc else ''}")
    folder = cache_dir() / "features"
    nets = sorted(folder.glob("domain-*.safetensors")) if folder.is_dir() else []
    print(f"cached domain networks in {folder}:" if nets else f"no cached domain networks in {folder}")
    for path in nets:
        try:
            state, meta = load_tensors(path)
        except (OSError, ValueError):
            print(f"  {path.name}: unreadable (delete it to retrain)")
            continue
        print(f"  {meta.get('dataset', '?'):<14} test accuracy {meta.get('test_accuracy', float('nan')):.4f}  "
              f"trained on {meta.get('n_train')} images, {meta.get('epochs')} epochs  "
              f"weights sha256 {weights_sha256(state)[:16]}")


def run_train(args):
    import sys

    from ..config import DataConfig
    from ..data import DATASETS
    from ..errors import GankitError
    from ..metrics.cache import load_tensors
    from ..metrics.domain_net import train_domain_net, weights_sha256

    if args.dataset not in DATASETS:
        raise GankitError(f"{args.dataset}: unknown dataset; choose one of: {', '.join(DATASETS.names())}")
    if args.limit is not None and args.limit < 10:
        raise GankitError(f"--limit {args.limit}: train on at least 10 images")
    path = train_domain_net(DataConfig(name=args.dataset, root=args.data_root), epochs=args.epochs,
                            limit=args.limit, seed=args.seed, log=lambda s: print(s, file=sys.stderr, flush=True))
    state, meta = load_tensors(path)
    print(f"{args.dataset}: test accuracy {meta['test_accuracy']:.4f} on {meta['n_test']} images "
          f"({meta['seconds']:.0f} s); saved {path} (weights sha256 {weights_sha256(state)[:16]})")
