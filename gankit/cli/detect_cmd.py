"""gankit detect: whether an image carries gankit's invisible watermark for a key."""


def register(sub):
    p = sub.add_parser("detect", help="detect the invisible watermark of `gankit sample --watermark KEY`",
                       description="Test whether IMAGE carries the watermark written with KEY; prints the detection "
                                   "score and the verdict at the threshold measured for a stated false-positive rate.")
    p.add_argument("file", metavar="IMAGE")
    p.add_argument("--key", required=True)
    p.set_defaults(func=run)


def run(args):
    from ..watermark import detect_file

    result = detect_file(args.file, args.key)
    print(result)
    return 0 if result.detected else 1
