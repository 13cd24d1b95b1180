"""gankit translate: apply a trained translator (pix2pix, cyclegan, a restoration model) to image files or folders."""


def register(sub):
    p = sub.add_parser("translate", help="translate images with a trained pix2pix/cyclegan run",
                       description="Translate each INPUT image (files, or folders searched recursively for "
                                   "PNG/JPEG/BMP/WEBP/GIF/TIFF; of an animated image the first frame) with a trained "
                                   "translation run. A pix2pix or CycleGAN run converts each image to the model's "
                                   "channels and resizes it to its training resolution (the output has that size, "
                                   "not the photo's); a restoration run keeps each image's own size. Each output "
                                   "is written as OUT_DIR/<name>.png (with --side-by-side: input | output). Every "
                                   "input is read before anything is written; no output replaces an input, and "
                                   "-o FILE.png must not exist. A voice-conversion run takes WAV files and writes "
                                   "OUT_DIR/<name>.wav, or -o OUT.wav for one input.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (WAV files for a voice-conversion run)")
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR",
                   help="folder for the outputs; for one input, a .png (.wav for voice conversion) file name")
    p.add_argument("--direction", default=None, help="AtoB or BtoA (CycleGAN); default: the first the model has")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"])
    p.add_argument("--side-by-side", action="store_true", help="write input | output pairs")
    p.add_argument("--skip-existing", action="store_true",
                   help="keep outputs already in OUT_DIR and skip their inputs (resume a folder run); without "
                        "it they are replaced")
    p.add_argument("--griffin-lim", type=int, default=64, metavar="ITERS",
                   help="spectrogram models: Griffin-Lim iterations turning spectrograms into sound (default 64)")
    r = p.add_argument_group("restoration runs (super-resolution, inpainting, uncropping, colorization, labels2image): "
                             "images of any size, written at their own size (x scale for super-resolution)")
    r.add_argument("--mask", metavar="FILE|KIND",
                   help="inpainting: the hole, a mask image (white = hole, or any colour on black or transparent; "
                        "resized to each input) or a kind drawn per image: centre, rect, stroke, border; "
                        "uncropping: a mask instead of --extend")
    r.add_argument("--seed", type=int, default=0, help="seed of drawn masks (default 0)")
    r.add_argument("--extend", type=int, metavar="PX",
                   help="uncropping: pixels added on every side, 1 to half the shorter side (default: 1/8 of "
                        "the shorter side)")
    r.add_argument("--tile", type=int, metavar="PX",
                   help="super-resolution: tile side in input pixels for large images, margins included: each tile "
                        "keeps its core and drops a margin the width of the network's receptive field, so tiles "
                        "give the one-pass picture (default: a 128 px core plus the margins; 0: one pass)")
    r.add_argument("--alpha", type=float, metavar="A",
                   help="a run started from another (loss.options.init_from: ESRGAN from its PSNR model, any GAN "
                        "from its reconstruction-only model): network interpolation, (1-A) x that model + A x this "
                        "one (Wang et al. 2018, Sec. 3.4)")
    p.set_defaults(func=run)


def run(args):
    from ..api import translate
    from ..errors import GankitError

    if args.griffin_lim < 1:
        raise GankitError(f"--griffin-lim {args.griffin_lim}: give at least one iteration")

    paths = translate(args.run_dir, args.inputs, args.out, direction=args.direction, which=args.checkpoint,
                      side_by_side=args.side_by_side, griffin_lim_iters=args.griffin_lim, mask=args.mask,
                      seed=args.seed, tile=args.tile, extend=args.extend, alpha=args.alpha,
                      skip_existing=args.skip_existing)
    print(f"wrote {len(paths)} file(s) to {args.out}")
