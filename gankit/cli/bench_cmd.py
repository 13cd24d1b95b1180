"""gankit bench: training-step speed of a recipe against a plain fp32 PyTorch step."""
from . import positive_int


def register(sub):
    p = sub.add_parser("bench", help="measure training speed against a plain PyTorch step",
                       description="Time gankit's training step and a plain fp32 eager step of the same "
                                   "networks, alternating in one process; print images/s, FLOPs, the "
                                   "fraction of this machine's matmul peak and the speed-up.")
    p.add_argument("recipes", nargs="+", metavar="RECIPE")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--windows", type=positive_int, default=7, help="timed windows per side (median reported)")
    p.add_argument("--steps", type=positive_int, default=5, help="training steps per window")
    p.set_defaults(func=run)


def run(args):
    from ..bench import bench, format_table

    rows = [bench(r, args.overrides, windows=args.windows, steps_per_window=args.steps) for r in args.recipes]
    print(format_table(rows))
