"""gankit inspect: where a file gankit wrote came from (its provenance metadata)."""


def register(sub):
    p = sub.add_parser("inspect", help="print the provenance of a PNG, NPZ or WAV gankit wrote",
                       description="Print the metadata gankit stores in the files it writes: gankit version, "
                                   "run name, checkpoint SHA-256, seed, truncation, date.")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=run)


def run(args):
    from ..provenance import format_provenance, read_provenance

    print(format_provenance(read_provenance(args.file)))
