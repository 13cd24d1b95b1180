"""gankit report: one self-contained HTML page about a run (report.html in the run folder)."""


def register(sub):
    p = sub.add_parser("report", help="write report.html about a run",
                       description="Write RUN_DIR/report.html: sample grids over time, loss, D-accuracy, "
                                   "gradient and metric curves, health events on a timeline, evaluation "
                                   "cards and the config. Pictures are inlined: the page is one file.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-o", "--out", default=None, help="output file (default RUN_DIR/report.html)")
    p.add_argument("--samples", type=int, default=8, help="sample grids to show, evenly spaced (default 8)")
    p.set_defaults(func=run)


def run(args):
    from ..errors import GankitError
    from ..report import write_report

    if args.samples < 1:
        raise GankitError(f"--samples {args.samples}: show at least one grid")
    print(write_report(args.run_dir, args.out, max_samples=args.samples, sections=_sections(args.run_dir)))


def _sections(run_dir) -> list:
    """The audio players of a speech run (spectrogram data); none for other runs."""
    from pathlib import Path

    import yaml

    cfg_file = Path(run_dir) / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.exists() else None
    from ..data.audio import SPEECH_DATASETS

    if not isinstance(cfg, dict) or (cfg.get("data") or {}).get("name") not in SPEECH_DATASETS:
        return []
    from ..api import load
    from ..audio.render import listen_section
    from ..errors import GankitError

    try:
        model = load(run_dir)
    except GankitError:  # no checkpoint yet: the page has no players
        return []
    sources = None
    if model.task.name == "translation":  # held-out utterances of the source speaker
        import torch

        from ..data import load_dataset
        data = load_dataset(model.cfg.data, "test", seed=model.cfg.seed)
        sources = data.batch(torch.arange(min(10, len(data.a))))["A"]
    section = listen_section(model, sources)
    return [section] if section is not None else []
