"""gankit train: train a recipe or YAML file, or resume a run folder."""


def register(sub):
    p = sub.add_parser("train", help="train a GAN from a recipe or YAML file",
                       description="Train a GAN. RECIPE is a shipped recipe name (see `gankit recipes`) "
                                   "or a YAML file; --resume RUN_DIR continues a run.")
    p.add_argument("recipe", nargs="?", help="recipe name or path to a YAML config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=2000 (repeatable)")
    p.add_argument("--out", help="run folder (default: runs/NAME, numbered if taken)")
    p.add_argument("--resume", metavar="RUN_DIR", nargs="?", const=True,
                   help="continue RUN_DIR from its latest checkpoint; with RECIPE and no RUN_DIR: continue --out "
                        "(default runs/NAME) if it holds this recipe's run, else start it, so the same command "
                        "restarts a killed job")
    p.add_argument("--quiet", action="store_true", help="no progress bar; one JSON log line per record")
    p.set_defaults(func=run)


def run(args):
    import sys

    from ..errors import GankitError, Interrupted
    from ..train.callbacks import JsonLines
    from ..train.distributed import env_world, exit_worker
    from ..train.run import train

    if args.resume not in (None, True) and args.recipe:
        raise GankitError("give either RECIPE (with --resume and no folder to continue its --out) or "
                          "--resume RUN_DIR, not both")
    if args.resume is True and not args.recipe:
        raise GankitError("--resume without RUN_DIR continues a recipe's run: give the recipe, or --resume RUN_DIR")
    if not args.resume and not args.recipe:
        raise GankitError("give a recipe (see `gankit recipes`) or --resume RUN_DIR")
    try:
        result = train(args.recipe, args.overrides, out=args.out, quiet=args.quiet, resume=args.resume,
                       callbacks=[JsonLines()] if args.quiet else [])
    except Interrupted as e:
        rank, world, _ = env_world()
        if world > 1:  # torchrun: every rank leaves now with the code, rank 0 says why
            if rank == 0:
                print(f"gankit: {e}", file=sys.stderr)
            exit_worker(e.exit_code)
        raise  # gankit.cli.main reports it and returns the code
    t = result.trainer
    if t.dist.is_main:  # torchrun: rank 0 speaks for the job
        if not result.was_finished:
            print(f"trained {result.cfg.name}: {t.state.step} steps, {t.epoch:.2f} epochs, {t.state.seconds:.1f} s")
        print(f"run folder: {result.dir}")
        print(f"samples:    {result.dir / 'samples'} (latest: {result.latest_samples})")
    exit_worker(0)  # torchrun: leave now, everything is written (a no-op in a single process)
