"""gankit data make spoken-digits OUT_DIR: build a data set offline (the spoken-digit corpus)."""

MAKERS = ("spoken-digits",)


def register(sub):
    from ..audio.corpus import SPEAKERS, TAKES

    p = sub.add_parser("data", help="build data sets offline (a spoken-digit corpus)",
                       description="Build data sets offline.")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data_sub.required = True
    make = data_sub.add_parser(
        "make", help="synthesise a corpus", description=(
            "Synthesise the spoken digits (or the --texts given) with espeak-ng and flite, jittering pitch, rate "
            "and noise per take, into 16 kHz mono WAVs OUT_DIR/<speaker>/<speaker>_<text>_<take>.wav with "
            "OUT_DIR/manifest.csv and OUT_DIR/corpus.json. The same --seed gives the same audio. See docs/audio.md."))
    make.add_argument("what", choices=MAKERS, help="the corpus to make")
    make.add_argument("out_dir", metavar="OUT_DIR", help="folder to write: new, empty, or a corpus made with the "
                                                        "same settings (made again)")
    make.add_argument("--speakers", nargs="+", default=list(SPEAKERS), metavar="SPEAKER",
                      help=f"espeak-<voice>[+<variant>] or flite-<voice> (default: {' '.join(SPEAKERS)})")
    make.add_argument("--texts", nargs="+", default=None, metavar="TEXT",
                      help="words or short sentences to say; a digit 0-9 means its word (default: zero ... nine)")
    make.add_argument("--takes", type=int, default=TAKES, help=f"takes per speaker and text (default {TAKES})")
    make.add_argument("--seed", type=int, default=0, help="seed of the jitter and noise (default 0)")
    make.add_argument("--jobs", type=int, default=1, help="synthesiser processes at once (default 1)")
    make.set_defaults(func=run)


def run(args):
    from ..audio.corpus import DIGITS, make_corpus

    summary = make_corpus(args.out_dir, speakers=args.speakers, texts=args.texts or DIGITS, takes=args.takes,
                          seed=args.seed, jobs=args.jobs)
    c = summary["counts"]
    print(f"wrote {c['files']} files to {args.out_dir}: {c['speakers']} speakers x {c['texts']} texts x "
          f"{summary['settings']['takes']} takes, {c['seconds']:.1f} s of audio ({c['seconds'] / 60:.1f} min), "
          f"{c['bytes'] / 1e6:.1f} MB, in {summary['build_seconds']:.1f} s")
    print(f"speakers: {' '.join(summary['settings']['speakers'])}")
    print(f"manifest: {args.out_dir}/manifest.csv; settings: {args.out_dir}/corpus.json")
