"""gankit project: find the latent that makes a trained generator reproduce each image."""


def register(sub):
    p = sub.add_parser("project", help="project real images into a trained generator's latent space",
                       description="Find, by optimisation (StyleGAN2's projector), the latent from which the "
                                   "generator of RUN_DIR makes each IMAGE (files, or folders searched recursively "
                                   "for PNG/JPEG/BMP/WEBP; converted to the model's channels and resized to its "
                                   "resolution). Writes OUT_DIR/NAME-projected.png (the reconstruction), "
                                   "NAME-latent.safetensors (the latent, its space, the optimised noise maps) and "
                                   "NAME-side-by-side.png (image | reconstruction), and prints each "
                                   "reconstruction's PSNR (dB, on the [0, 1] range) and their mean.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR",
                   help="folder for the outputs, checked before the optimisation starts (not a file, nor a file "
                        "name such as x.png); an output already there is replaced only if gankit wrote it, and "
                        "earlier outputs inside an input folder are not projected again")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps per image (default 1000)")
    p.add_argument("--space", choices=["w", "w+", "z"], default=None,
                   help="w: one style vector for every layer; w+: one per layer (style generators; default w); "
                        "z: the input noise (the only space of other generators, and their default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the w statistics and the latent noise (default 0)")
    p.add_argument("--class", dest="label", default=None,
                   help="conditional models: the class of the images (needed with --space z)")
    p.add_argument("--features", choices=["auto", "domain", "none"], default="auto",
                   help="the feature term of the loss, in the dataset's domain network: auto (when one is cached; "
                        "default), domain (train it once if missing), none (pixel MSE only)")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"])
    p.set_defaults(func=run)


def run(args):
    from ..steer.projection import project

    results = project(args.run_dir, args.images, args.out, steps=args.steps, space=args.space, seed=args.seed,
                      label=args.label, features=args.features, which=args.checkpoint)
    for r in results:
        print(f"{r['name']}: PSNR {r['psnr']:.2f} dB")
    mean = sum(r["psnr"] for r in results) / len(results)
    print(f"mean PSNR {mean:.2f} dB over {len(results)} image(s); wrote {3 * len(results)} file(s) to {args.out}")
