"""gankit train: train a recipe or YAML file, or resume a run folder."""


def register(sub):
    p = sub.add_parser("train", help="train a GAN from a recipe or YAML file",
                       description="Train a GAN. RECIPE is a shipped recipe name (see `gankit recipes`) "
                                   "or a YAML file; --resume RUN_DIR continues a run.")
    p.add_argument("recipe", nargs="?", help="recipe name or path to a YAML config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=2000 (repeatable)")
    p.add_argument("--out", help="run folder (default: runs/NAME, numbered if taken)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its latest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar; one JSON log line per record")
    p.set_defaults(func=run)


def run(args):
    from ..errors import GankitError
    from ..train.distributed import exit_worker
    from ..train.run import train

    if args.resume and args.recipe:
        raise GankitError("give either RECIPE or --resume RUN_DIR, not both")
    if not args.resume and not args.recipe:
        raise GankitError("give a recipe (see `gankit recipes`) or --resume RUN_DIR")
    result = train(args.recipe, args.overrides, out=args.out, quiet=args.quiet, resume=args.resume)
    t = result.trainer
    if t.dist.is_main:  # torchrun: rank 0 speaks for the job
        print(f"trained {result.cfg.name}: {t.state.step} steps, {t.epoch:.2f} epochs, {t.state.seconds:.1f} s")
        print(f"run folder: {result.dir}")
        print(f"samples:    {result.dir / 'samples'} (latest: {result.latest_samples})")
    exit_worker(0)  # torchrun: leave now, everything is written (a no-op in a single process)
