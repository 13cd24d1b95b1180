"""gankit report: one self-contained HTML page, checked as text and in a real headless Chromium."""
import json
import re
import shutil

import pytest

from gankit.cli.main import main
from gankit.train.run import train
from gankit.report import write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny ring8 run that diverges once (so it has health events), with an eval.json beside it."""
    out = tmp_path_factory.mktemp("report") / "run"
    train("gan-ring8", ["data.size=2000", "model.g.width=32", "model.d.width=32", "train.batch_size=64",
                        "train.threads=1", "train.steps=120", "train.log_every=10", "train.sample_every=30",
                        "train.g_optim.lr=0.5", "train.d_optim.lr=0.5", "health.lr_factor=0.1",
                        "health.on_converged=warn"], out=out, quiet=True)
    card = {"features": "raw", "n_fake": 2000, "n_real": 2000, "reference": {"dataset": "ring8", "split": "test"},
            "warnings": ["2000 samples scored; the VEEGAN/PacGAN protocol uses 2500"]}
    results = [{"name": "fid", "value": 12.5, "std": None, "card": card, "card_id": "0daaa6666a"},
               {"name": "kid", "value": 0.0123, "std": 0.0004, "card": card, "card_id": "1b2c3d4e5f"}]
    (out / "eval.json").write_text(json.dumps({"source": {"kind": "run", "checkpoint": "latest", "step": 120},
                                               "results": results}))
    return out


def test_report_is_one_self_contained_page(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    srcs = re.findall(r'<img src="([^"]*)"', page)
    assert len(srcs) >= 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)          # nothing outside the file
    for title in ("Health", "Samples over time", "Losses and discriminator accuracy", "Gradient norms",
                  "Health signals", "Evaluation", "Configuration"):
        assert f"<h2>{title}</h2>" in page
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events and page.count("<tr><td>") >= len(events)
    assert "diverged" in page and "rolled back to step 0" in page
    assert "12.5" in page and "0.0123 ± 0.0004" in page and "ring8 test" in page   # evaluation cards
    assert "latest checkpoint at step 120" in page and "PacGAN protocol" in page
    assert "name: gan-ring8" in page                                     # the config


def test_a_run_that_did_not_finish_says_so(run_dir, tmp_path):
    """A killed run's page would otherwise read like a finished one with fewer steps."""
    assert "Not finished" not in write_report(run_dir).read_text()
    killed = tmp_path / "killed"
    shutil.copytree(run_dir, killed)
    ckpt = killed / "checkpoints"
    (ckpt / "previous.safetensors").replace(ckpt / "latest.safetensors")  # the state before the last write
    from gankit.checkpoint import read_skeleton
    step = read_skeleton(ckpt / "latest.safetensors")["trainer"]["step"]
    assert step < 120
    page = write_report(killed).read_text()
    assert f"<b>Not finished:</b> its latest checkpoint is at step {step};" in page
    (ckpt / "latest.safetensors").unlink()
    (ckpt / "best.safetensors").unlink()
    assert "it has no checkpoint yet" in write_report(killed).read_text()


def test_report_command(run_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "-o", str(out), "--samples", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert len(re.findall(r"<figcaption>step", out.read_text())) == 2
    assert main(["report", str(tmp_path)]) == 2
    assert "not a gankit run folder" in capsys.readouterr().err


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    path = write_report(run_dir)
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900})
        try:
            page = browser.new_page()
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("() => Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(images) >= 6
    assert all(complete and width > 0 for _, complete, width in images), images
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_report_of_a_run_without_health_monitor(tmp_path):
    out = tmp_path / "plain"
    train("gan-ring8", ["data.size=500", "model.g.width=8", "model.d.width=8", "train.batch_size=32", "train.steps=10",
                        "train.log_every=5", "train.threads=1", "health.enabled=false"], out=out, quiet=True)
    assert not (out / "events.jsonl").exists() and not (out / "health.json").exists()
    page = write_report(out).read_text()
    assert "no health record" in page and "No health events." in page
    assert "grad/" not in page and "<h2>Gradient norms</h2>" not in page   # nothing measured, nothing drawn
    assert "<h2>Evaluation</h2>" not in page


def test_a_title_wider_than_its_figure_is_kept_whole_and_numbers_are_rounded(run_dir):
    """One health panel under a long title (a translation run's report): the picture widens to hold the
    title instead of cutting it; the summary line rounds epochs and seconds."""
    import io

    from PIL import Image

    from gankit.report import build_report, plot_metrics

    records = [{"step": s, "health/energy": 1.0 / s} for s in (10, 20, 30)]
    title = "health signals (diversity and energy are relative to real data)"
    with Image.open(io.BytesIO(plot_metrics(records, ["health/energy"], title))) as im:
        assert im.width > 340   # the figure is 3.4 in x 100 dpi; the title alone is wider
    page = build_report(run_dir)
    assert re.search(r"<p>120 generator steps, \d+\.\d\d epochs, \d+\.\d s of training", page)
