"""gankit edit: move latents along a direction (SeFa, class means) and show the result as a strip."""
from ..latent import PSI_RANGE


def register(sub):
    p = sub.add_parser("edit", help="edit samples along a latent direction (SeFa, class directions)",
                       description="Render -n latents (rows) moved along a direction by strengths evenly from "
                                   "-S to +S (columns; the middle one, 0, is the unedited sample) and write the "
                                   "strip as one PNG, tiles without padding. Directions: sefa:I (SeFa, Shen & "
                                   "Zhou 2021: eigenvectors of the first style affine, style generators), "
                                   "sefa-all:I (of all style affines), class:A-B (mean latent of class B minus "
                                   "that of class A; an unconditional model's samples are sorted by the dataset's "
                                   "domain network). --list prints those the model offers.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--direction", metavar="NAME", help="e.g. sefa:0, sefa-all:2, class:3-8")
    p.add_argument("--list", action="store_true", help="print the directions this model offers and exit")
    p.add_argument("--strength", type=float, default=3.0, metavar="S",
                   help="largest strength (default 3): unit-norm SeFa directions move w by S; class directions "
                        "by S times the distance between the class means")
    p.add_argument("--steps", type=int, default=7, help="columns, strengths from -S to +S (default 7)")
    p.add_argument("-n", type=int, default=4, help="rows: latents edited (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="label", default=None,
                   help="conditional models: the class of every row (default: rows cycle through the classes)")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                   help=f"truncation ψ of the rows before editing, {PSI_RANGE}; default 1: a style generator "
                        "pulls w toward its mean, any other resamples z as gankit sample --truncation does")
    p.add_argument("--samples", type=int, default=1000,
                   help="latents drawn to estimate a class direction (default 1000)")
    p.add_argument("--latent", metavar="FILE", default=None,
                   help="edit a latent written by gankit project (NAME-latent.safetensors) for this checkpoint "
                        "instead of -n drawn ones: one row, with its class and noise maps (strength 0 is the "
                        "projected image)")
    p.add_argument("-o", "--out", default="edit.png",
                   help="the strip, a .png (default edit.png); an existing file is replaced only if gankit wrote it")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"])
    p.set_defaults(func=run)


def run(args):
    from ..errors import GankitError

    if args.list:
        from ..api import load
        from ..steer.directions import model_directions

        for name in model_directions(load(args.run_dir, which=args.checkpoint)):
            print(name)
        return
    if not args.direction:
        raise GankitError("give --direction NAME (see gankit edit RUN_DIR --list)")
    from ..steer.directions import edit

    x, d = edit(args.run_dir, args.direction, args.strength, seed=args.seed, n=args.n, out=args.out,
                steps=args.steps, label=args.label, psi=args.truncation, samples=args.samples,
                which=args.checkpoint, latent=args.latent)
    print(f"{d.name} ({d.note}): wrote {args.out}, {len(x) // args.steps} rows x {args.steps} strengths")
