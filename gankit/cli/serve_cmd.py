"""gankit serve: a local web page to sample from, walk through and translate with a trained run."""


def register(sub):
    p = sub.add_parser("serve", help="serve a local web page for a trained run",
                       description="Start a small HTTP server (127.0.0.1 unless --host says otherwise) with a page "
                                   "to draw samples (seed, class, truncation), walk the latent space, and "
                                   "translate an uploaded image for translation models. Ctrl-C stops it.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--workers", type=int, default=4, help="requests served at once (default 4)")
    p.add_argument("--queue", type=int, default=32,
                   help="requests that may wait for a worker; beyond that the server answers 503 (default 32)")
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"],
                   help="the run's latest checkpoint (default) or its best; a model folder holds one model and "
                        "takes neither")
    p.set_defaults(func=run)


def run(args):
    from ..serve import serve

    serve(args.run_dir, host=args.host, port=args.port, workers=args.workers, which=args.checkpoint,
          queue=args.queue, quiet=args.quiet)
