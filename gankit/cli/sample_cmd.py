"""gankit sample: samples of a trained run as a PNG grid or an NPZ of arrays."""
from ..latent import PSI_RANGE


def register(sub):
    p = sub.add_parser("sample", help="write samples of a trained run",
                       description="Write samples: -o FILE.png (grid or scatter) or -o FILE.npz "
                                   "(array x: (N, C, H, W) or (N, D) float32; y: labels if conditional); "
                                   "for a spectrogram model, -o FOLDER writes one WAV per sample and spectrograms.png.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-n", type=int, default=None,
                   help="number of samples (default 64); with --interpolate, the number of walks, one row of 10 "
                        "steps each (default 8)")
    p.add_argument("-o", "--out", default="samples.png", help="output file, .png or .npz (an existing file is replaced only if gankit wrote it); a "
                        "folder (no suffix) for WAVs of a spectrogram model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="label", default=None, metavar="CLASS",
                   help="class to sample (conditional models): its index, or its name (a folder's sub-folder)")
    p.add_argument("--interpolate", action="store_true",
                   help="latent walks between random z's: -n rows (default 8) of 10 steps, each in class --class "
                        "when given (else row i in class i mod K); a style generator's frames share its "
                        "constant noise maps")
    p.add_argument("--latent", metavar="FILE", default=None,
                   help="render a latent written by gankit project (NAME-latent.safetensors) for this "
                        "checkpoint, with its own noise maps: the projected image")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"])
    p.add_argument("--rejection", action="store_true",
                   help="discriminator rejection sampling (Azadi et al. 2019): fit a copy of D to G's density "
                        "ratio on the training data, keep samples in proportion to it")
    p.add_argument("--rejection-steps", type=int, default=1000, help="Adam steps fitting D (default 1000)")
    p.add_argument("--rejection-percentile", type=float, default=None,
                   help="shift acceptance by this percentile of F per batch (the paper's γ; default: exact rejection)")
    p.add_argument("--watermark", metavar="KEY", default=None,
                   help="embed an invisible watermark for KEY in every image (gankit detect FILE --key KEY finds it)")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                   help=f"truncation ψ, {PSI_RANGE}; default 1: a style generator pulls w toward its mean, "
                        "any other resamples z inside BigGAN's threshold Φ⁻¹((1+ψ)/2)")
    p.add_argument("--cutoff", type=int, default=None, metavar="K",
                   help="style generators: truncate only style indices < K, the coarse layers (default: all)")
    p.add_argument("--griffin-lim", type=int, default=64, metavar="ITERS",
                   help="spectrogram models: Griffin-Lim iterations turning spectrograms into sound (default 64)")
    p.set_defaults(func=run)


def run(args):
    from ..api import sample
    from ..errors import GankitError

    if args.n is not None and args.n < 1:
        raise GankitError(f"-n {args.n}: give at least one sample")
    if args.griffin_lim < 1:
        raise GankitError(f"--griffin-lim {args.griffin_lim}: give at least one iteration")
    if not 0 <= args.truncation <= 1:  # also NaN; the exact rule (0 only for a style generator) is checked on the model
        raise GankitError(f"--truncation {args.truncation:g}: give ψ with {PSI_RANGE}")
    if args.rejection_steps < 0:
        raise GankitError(f"--rejection-steps {args.rejection_steps}: give 0 or more")
    if args.latent is not None:
        others = [flag for flag, used in (("--interpolate", args.interpolate), ("--rejection", args.rejection),
                                          ("--truncation", args.truncation != 1), ("--cutoff", args.cutoff is not None),
                                          ("--class", args.label is not None), ("-n", args.n not in (None, 1)))
                  if used]
        if others:
            raise GankitError(f"--latent {args.latent} renders the projected latent as it is (its class and noise "
                              f"come from the file): drop {', '.join(others)}")
        from ..steer.projection import sample_latent
        print(sample_latent(args.run_dir, args.latent, out=args.out, which=args.checkpoint, watermark=args.watermark))
        return
    path = sample(args.run_dir, n=args.n, out=args.out, seed=args.seed, label=args.label,
                  interpolate=args.interpolate, which=args.checkpoint, rejection=args.rejection,
                  rejection_steps=args.rejection_steps, rejection_percentile=args.rejection_percentile, watermark=args.watermark,
                  griffin_lim_iters=args.griffin_lim, truncation=args.truncation, cutoff=args.cutoff)
    print(path)
