"""gankit export: a trained generator as ONNX, or as a self-contained model folder."""


def register(sub):
    p = sub.add_parser("export", help="export a trained generator (ONNX file or model folder)",
                       description="Export the sampling generator of RUN_DIR (its EMA when the run keeps one): "
                                   "--format onnx writes one .onnx file checked against PyTorch with onnxruntime; "
                                   "--format folder writes config + safetensors + model card, loadable with "
                                   "gankit.load(OUT) without the run folder.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (or a model folder written by --format folder)")
    p.add_argument("--format", required=True, choices=["onnx", "folder"])
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="the .onnx file or the folder to write")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"],
                   help="the run's latest checkpoint (default) or the evaluator's best (a model folder holds one)")
    p.add_argument("--direction", default=None, metavar="NAME",
                   help="translation models with two directions (CycleGAN): AtoB (default) or BtoA; onnx only")
    p.add_argument("--exporter", default="torchscript", choices=["torchscript", "dynamo"],
                   help="onnx: torch.onnx's TorchScript exporter (default; opset 17) or its torch.export one")
    p.set_defaults(func=run)


def run(args):
    from ..export import export

    print(export(args.run_dir, args.format, args.out, which=args.checkpoint, direction=args.direction,
                 exporter=args.exporter))
