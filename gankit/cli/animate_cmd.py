"""gankit animate: how a 1D/2D run learned, as the Goodfellow et al. (2014) figure over training."""


def register(sub):
    p = sub.add_parser("animate", help="animate a 1D/2D run's training (data, G's density, D(x))",
                       description="From the snapshots of G and D a run keeps (train.snapshot_every), draw p_data, "
                                   "the generator's density and D(x) (1D), or the sample cloud over D's decision "
                                   "surface (2D), at each snapshot, into a GIF (or MP4).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-o", "--out", default=None, metavar="FILE", help="output .gif or .mp4 (default RUN_DIR/animation.gif)")
    p.add_argument("--fps", type=float, default=4.0)
    p.set_defaults(func=run)


def run(args):
    from ..animate import animate_run

    print(animate_run(args.run_dir, out=args.out, fps=args.fps))
