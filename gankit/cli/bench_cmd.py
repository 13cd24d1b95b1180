"""gankit bench: training-step speed of a recipe against a plain fp32 PyTorch step."""
from . import positive_int


def register(sub):
    p = sub.add_parser("bench", help="measure training speed against a plain PyTorch step",
                       description="Time gankit's training step and a plain fp32 eager step of the same "
                                   "networks (the recipe's optimisers, at the stage gankit trains), "
                                   "alternating in one process; print images/s, the speed-up with the "
                                   "min-max of its windows, FLOPs and the fraction of this machine's matmul "
                                   "peak. Each recipe runs at its own train.threads.")
    p.add_argument("recipes", nargs="+", metavar="RECIPE")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--windows", type=positive_int, default=7, help="timed windows per side (median reported)")
    p.add_argument("--steps", type=positive_int, default=5,
                   help="training steps per window, rounded up to a multiple of the longest lazy interval "
                        "(R1 every 16: 16)")
    p.add_argument("--json", metavar="FILE", help="also write every row's raw figures to FILE as JSON lines")
    p.set_defaults(func=run)


def run(args):
    import contextlib

    from ..bench import bench, format_table, write_rows
    from ..errors import GankitError, option

    try:
        out = open(args.json, "w", encoding="utf-8") if args.json else contextlib.nullcontext()
    except OSError as e:
        raise GankitError(f"{option('--json', args.json, param='json')}: cannot write it ({e.strerror}); "
                          "give a file in a folder that exists") from None
    rows = []
    with out:
        for r in args.recipes:
            rows.append(bench(r, args.overrides, windows=args.windows, steps_per_window=args.steps))
            if args.json:
                write_rows(rows[-1:], out)
    print(format_table(rows))
