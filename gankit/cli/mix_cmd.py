"""gankit mix: a style-mixing grid of a StyleGAN/StyleGAN2 run."""


def register(sub):
    p = sub.add_parser("mix", help="style-mixing grid of a stylegan/stylegan2 run",
                       description="Write a style-mixing grid (Karras et al. 2019, Fig. 3): the top row are the "
                                   "column sources, the first column the row sources, and each cell takes the coarse "
                                   "styles (indices < K) of its row source and the finer ones of its column source. "
                                   "Every picture uses the generator's constant noise maps.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-o", "--out", default="mix.png", help="output .png (default mix.png); an existing file is replaced only if gankit wrote it")
    p.add_argument("--rows", type=int, default=4, help="row sources (default 4)")
    p.add_argument("--cols", type=int, default=4, help="column sources (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sources' latents (rows drawn first)")
    p.add_argument("--coarse", type=int, default=None, metavar="K",
                   help="style indices taken from the row source (default: those acting at sides ≤ 8 px)")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                   help="pull every w toward the mean by ψ first, 0 ≤ ψ ≤ 1 (default 1: none)")
    p.add_argument("--row-latents", nargs="+", default=[], metavar="LATENT",
                   help="latent files of `gankit project` (this checkpoint's) as the row sources instead of drawn "
                        "ones: the coarse styles of your own images")
    p.add_argument("--col-latents", nargs="+", default=[], metavar="LATENT",
                   help="the same for the column sources: the fine styles of your own images")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"])
    p.set_defaults(func=run)


def run(args):
    from ..steer.mixing import mix

    print(mix(args.run_dir, out=args.out, rows=args.rows, cols=args.cols, seed=args.seed, coarse=args.coarse,
              truncation=args.truncation, which=args.checkpoint, row_latents=args.row_latents,
              col_latents=args.col_latents))
