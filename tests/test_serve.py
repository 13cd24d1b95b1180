"""gankit serve: the page in a real headless Chromium, every refusal, a bounded load test."""
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.api import load
from gankit.cli.main import main
from gankit.data.base import to_model_range, to_uint8
from gankit.serve import ModelService, make_server
from gankit.latent import resample_outside, slerp
from gankit.serve.validate import MAX_UPLOAD_BYTES
from gankit.train.run import train

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TINY = ["train.threads=1", "train.log_every=5", "health.enabled=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs: a conditional image generator (ACGAN, 10 classes), a translator (pix2pix), a 2D GAN,
    a conditional StyleGAN2 generator. GANKIT_SERVE_RUN=DIR uses that run as the generator instead (for the docs screenshot)."""
    root = tmp_path_factory.mktemp("serve")
    gen = os.environ.get("GANKIT_SERVE_RUN")
    if not gen:
        gen = root / "gen"
        train("acgan-fashion-mnist", ["data.name=digits", "data.resolution=16", "model.g.width=8", "model.d.width=8",
                                      "train.batch_size=16", "train.steps=10", *TINY], out=gen, quiet=True)
    train("pix2pix-edges2fashion", ["data.limit=64", "model.g.width=8", "model.d.width=8", "train.batch_size=8",
                                    "train.minutes=null", "train.steps=3", *TINY], out=root / "tr", quiet=True)
    train("gan-ring8", ["model.g.width=16", "model.d.width=16", "train.steps=10", *TINY], out=root / "vec", quiet=True)
    train("dcgan-digits", ["data.resolution=16", "data.limit=64", "model.z_dim=8", "model.arch=stylegan2",
                           "model.conditional=true", "model.g={w_dim: 8, mapping_layers: 2, width: 64, max_width: 8}",
                           "model.d={width: 64, max_width: 8}", "train.batch_size=8", "train.steps=2", *TINY],
          out=root / "style", quiet=True)
    return {"gen": Path(gen), "tr": root / "tr", "vec": root / "vec", "style": root / "style"}


@pytest.fixture(scope="module")
def services(runs):
    return {k: ModelService(load(v), v.name) for k, v in runs.items()}


@contextmanager
def running(service, **kw):
    server = make_server(service, port=0, quiet=True, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(server, method, path, body=None, headers=None):
    """(status, headers, body) over a fresh connection."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


def raw(server, data: bytes) -> bytes:
    """Send bytes as they are (malformed requests http.client would not send); the whole answer."""
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def expected_samples(service, seed, n, label=None, truncation=None) -> torch.Tensor:
    """What /api/sample must show, computed here without the server: the model's samples for the seed."""
    return service.model.sample(n, seed=seed, labels=label, truncation=1.0 if truncation is None else truncation)[0]


# ---- latent codes ----------------------------------------------------------------------------
def test_truncation_redraws_only_components_outside_the_threshold():
    z = torch.randn(64, 128, generator=torch.Generator().manual_seed(7))
    zt = resample_outside(z, 0.5, torch.Generator().manual_seed(8))
    inside = z.abs() <= 0.5
    assert zt.abs().max() <= 0.5
    assert torch.equal(zt[inside], z[inside])                 # kept as drawn
    assert not torch.equal(zt[~inside], z[~inside].clamp(-0.5, 0.5))  # redrawn, not clamped
    # a redrawn component is N(0, 1) conditioned on |z| <= 0.5 (std 0.284, scipy's truncnorm);
    # 64·128·0.62 ≈ 5,000 of them estimate its std to about ±0.002. Clamping would give ≈ 0.5.
    from scipy.stats import truncnorm
    assert abs(zt[~inside].std().item() - truncnorm(-0.5, 0.5).std()) < 0.01


def test_an_upload_is_read_as_files_are_upright_and_transparency_over_white():
    from gankit.serve.validate import decode_image
    stored = np.zeros((8, 4, 4), np.uint8)              # a phone picture stored turned: EXIF orientation 6
    stored[..., 0], stored[..., 3] = 200, 255
    stored[6:, :, 3] = 0                                # the bottom rows transparent, red hidden under them
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(stored, "RGBA").save(buf, format="PNG", exif=exif)
    im = np.asarray(decode_image(buf.getvalue(), "RGB"))
    assert im.shape == (4, 8, 3)                        # turned upright: 4 high, 8 wide
    assert (im[:, :2] == 255).all() and (im[:, 2:, 0] == 200).all()   # the transparent rows: white, on the left


def test_slerp_ends_at_both_codes_and_stays_on_the_shell():
    a, b = torch.randn(2, 1, 100, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    b = b / b.norm() * a.norm()
    mid = slerp(a, b, 0.5)
    assert abs(mid.norm().item() - a.norm().item()) < 1e-4   # a straight line's midpoint is ~0.7× shorter
    assert ((a + b) / 2).norm() < 0.8 * a.norm()


# ---- the page in a real browser ----------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1180, "height": 820})
        try:
            yield context
        finally:
            context.close()


IMG_DATA_URL = """(sel) => { const img = document.querySelector(sel); const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight; c.getContext('2d').drawImage(img, 0, 0);
  return c.toDataURL('image/png'); }"""


@pytest.mark.parametrize("named", [False, True])
def test_page_draws_samples_and_the_walk_slider_changes_the_picture(services, browser, tmp_path, named, monkeypatch):
    svc = services["gen"]
    if named:  # a run from a folder of class folders keeps their names; the class menu shows them
        monkeypatch.setitem(svc.model.data, "classes", [f"class-{k}" for k in range(svc.model.num_classes)])
    with running(svc) as server:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # e.g. a CSP refusal
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        page.wait_for_selector("#samples[data-state=ready]", timeout=15000)
        page.wait_for_selector("#walk[data-state=ready]", timeout=15000)
        assert svc.model.cfg.loss.objective in page.inner_text("#meta")
        assert page.is_visible("#class-label") == (svc.model.num_classes > 0)
        assert page.is_hidden("#translate-panel") and page.is_visible("#mix-note")   # no style layers: no mixing
        walk_before = page.evaluate(IMG_DATA_URL, "#walk")
        samples = page.get_attribute("#samples", "data-query")
        # the slider, moved with the keyboard as a user would: End takes it to t = 1
        page.focus("#walk-t")
        page.keyboard.press("End")
        page.wait_for_selector("#walk[data-state=ready][data-query*='t=1.00']", timeout=15000)
        walk_after = page.evaluate(IMG_DATA_URL, "#walk")
        assert walk_after != walk_before
        # what the page shows at t = 1 is seed B's sample (class 0), as the model makes it
        shown = np.asarray(Image.open(io.BytesIO(_data_url_bytes(walk_after))).convert("L"))
        want = to_uint8(expected_samples(svc, seed=1, n=1, label=0 if svc.model.num_classes else None))[0, 0].numpy()
        if svc.model.info.sample_shape[0] == 1:
            assert np.abs(shown.astype(int) - want.astype(int)).max() <= 1
        # a new seed redraws the samples
        page.fill("#seed", "5")
        page.wait_for_selector("#samples[data-state=ready][data-query*='seed=5']", timeout=15000)
        assert page.get_attribute("#samples", "data-query") != samples
        if svc.model.num_classes:
            options = page.eval_on_selector_all("#class option", "os => os.map(o => o.textContent)")
            names = svc.model.class_names
            assert options[-svc.model.num_classes:] == [f"{k} {names[k]}" if names else str(k)
                                                        for k in range(svc.model.num_classes)]
            page.select_option("#class", "3")
            page.wait_for_selector("#samples[data-query*='class=3'][data-state=ready]", timeout=15000)
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        page.close()
    assert not errors, errors
    assert requested and all(u.startswith(server.url) or u.startswith(("blob:", "data:")) for u in requested), requested
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("GANKIT_UPDATE_DOCS") == "1":
        shutil.copy(shot, ROOT / "docs" / "serve.png")


def _data_url_bytes(url: str) -> bytes:
    import base64

    return base64.b64decode(url.split(",", 1)[1])


def test_an_uploaded_image_round_trips_through_the_translator(services, browser, tmp_path):
    svc = services["tr"]
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)        # RGB and another size: converted, resized
    path = tmp_path / "edges.png"
    path.write_bytes(png(source))
    with running(svc) as server:
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        assert page.is_visible("#translate-panel") and page.is_hidden("#sample-panel")
        with page.expect_response(lambda r: "/api/translate" in r.url) as answer:
            page.set_input_files("#upload", str(path))
        page.wait_for_selector("#translated[data-state=ready]", timeout=15000)
        size = page.evaluate("() => [document.querySelector('#translated').naturalWidth, "
                             "document.querySelector('#input-preview').naturalWidth]")
        shown = page.evaluate(IMG_DATA_URL, "#translated")
        page.close()
    assert answer.value.status == 200 and size == [32, 40]
    # what the page shows is what the Python API makes of the same file
    from gankit.data.images import prepare_image
    c, h, w = svc.model.info.sample_shape
    x = to_model_range(torch.from_numpy(prepare_image(path, c, (h, w)).copy())[None, None])
    want = to_uint8(svc.model.translate(x))[0, 0].numpy()
    got = np.asarray(Image.open(io.BytesIO(_data_url_bytes(shown))).convert("L"))
    assert np.array_equal(got, want)


def test_a_non_square_upload_is_centre_cropped_as_gankit_translate_does(runs, services, tmp_path, capsys):
    """A 96×32 upload to a 32×32 translator: the centre 32×32 square, as `gankit translate` reads the
    file, not the whole image squashed (which the test checks gives another picture)."""
    svc = services["tr"]
    wide = np.random.default_rng(3).integers(0, 256, (32, 96, 3), dtype=np.uint8)
    wide[:, 32:64] = 0                                   # the centre black, the sides noise
    path = tmp_path / "wide.png"
    path.write_bytes(png(wide))
    assert main(["translate", str(runs["tr"]), str(path), "-o", str(tmp_path / "cli.png")]) == 0
    capsys.readouterr()
    want = pixels((tmp_path / "cli.png").read_bytes())
    with running(svc) as server:
        got, _, body = request(server, "POST", "/api/translate", body=path.read_bytes())
    assert got == 200 and np.array_equal(pixels(body), want)
    c, h, w = svc.model.info.sample_shape
    squashed = np.asarray(Image.fromarray(wide).convert("L").resize((w, h), Image.Resampling.BICUBIC))
    x = to_model_range(torch.from_numpy(squashed.copy())[None, None])
    assert not np.array_equal(to_uint8(svc.model.translate(x))[0, 0].numpy(), want)


def test_a_tiny_truncation_and_long_decimals_are_served(services):
    """ψ = 1e-17 gave τ = 0 and a 500; 13 decimal places were "not a number". Both are valid ψ."""
    from gankit.viz.grids import image_grid

    svc = services["gen"]
    with running(svc) as server:
        for q in ("truncation=1e-17", "truncation=0.0000000000001"):
            got, _, body = request(server, "GET", f"/api/sample?seed=4&n=4&class=2&{q}")
            assert got == 200, (q, body[:200])
            grid = image_grid(expected_samples(svc, seed=4, n=4, label=2, truncation=float(q.split("=")[1])), nrow=2)
            assert np.array_equal(pixels(body).reshape(grid.shape), grid), q


# ---- refusals ----------------------------------------------------------------------------------
GEN_BAD = [
    ("GET", "/nope", 404, "no such page"),
    ("GET", "/../../etc/passwd", 404, "no such page"),
    ("GET", "/static/../server.py", 404, "no such page"),
    ("GET", "/%2e%2e/pyproject.toml", 404, "no such page"),
    ("GET", "/api/sample?seed=-1", 400, "seed=-1: must be in [0, 2147483647]"),
    ("GET", "/api/sample?seed=abc", 400, "not an integer"),
    ("GET", "/api/sample?seed=1e3", 400, "not an integer"),
    ("GET", "/api/sample?n=0", 400, "n=0: must be in [1, 64]"),
    ("GET", "/api/sample?n=65", 400, "n=65: must be in [1, 64]"),
    ("GET", "/api/sample?n=99999999999999", 400, "n=99999999999999: must be in [1, 64]"),   # out of range, not
    ("GET", "/api/sample?seed=1234567890123", 400, "must be in [0, 2147483647]"),           # malformed
    ("GET", "/api/sample?n=" + "9" * 5000, 400, "must be in [1, 64]"),     # over Python's 4,300-digit int()
    ("GET", "/api/sample?n=%C2%B2", 400, "not an integer"),                # "²": str.isdigit, not int()
    ("GET", "/api/sample?truncation=1.5", 400, "truncation=1.5: must be in [0, 1]"),
    ("GET", "/api/sample?truncation=0", 400, "truncation=0: give ψ with 0 < ψ ≤ 1"),   # 0: style generators only
    ("GET", "/api/walk?truncation=0", 400, "truncation=0: give ψ with 0 < ψ ≤ 1"),
    ("GET", "/api/sample?truncation=nan", 400, "not a number"),
    ("GET", "/api/sample?truncation=inf", 400, "not a number"),
    ("GET", "/api/sample?truncation=1e999", 400, "not a finite number"),
    ("GET", "/api/sample?seed=1&seed=2", 400, "given twice"),
    ("GET", "/api/sample?bogus=1", 400, "unknown parameter 'bogus'"),
    ("GET", "/api/walk?t=1.5", 400, "t=1.5: must be in [0, 1]"),
    ("GET", "/api/info?x=1", 400, "unknown parameter"),
    ("GET", "/api/mix", 501, "no style layers"),
    ("POST", "/api/sample", 405, "takes GET"),
    ("GET", "/api/translate", 405, "takes POST"),
    ("PUT", "/", 405, "not allowed"),
    ("POST", "/", 405, "read with GET"),
    ("DELETE", "/api/info", 405, "not allowed"),
    ("POST", "/api/translate", 400, "generation model: it takes no input image"),
]


def test_bad_requests_get_a_4xx_with_one_line_and_the_server_keeps_serving(services):
    k = services["gen"].model.num_classes
    assert k >= 2  # the tiny generator is conditional, so class checks are exercised
    bad = GEN_BAD + [("GET", f"/api/sample?class={k}", 400, f"class={k}: must be in [0, {k - 1}]"),
                     ("GET", "/api/sample?class=-1", 400, "class=-1: must be ≥ 0")]
    with running(services["gen"]) as server:
        for method, path, status, message in bad:
            got, headers, body = request(server, method, path, body=b"" if method == "POST" else None)
            assert got == status, (method, path, got, body)
            err = json.loads(body)["error"]
            assert message in err and "\n" not in err and "Traceback" not in err and "-inf]" not in err, (path, err)
            assert headers["Content-Type"] == "application/json"
            if got == 405:   # RFC 9110 §15.5.6: a 405 lists the methods the resource takes
                assert headers["Allow"] == ("POST" if path == "/api/translate" else "GET, HEAD"), (method, path)
            assert request(server, "GET", "/api/info")[0] == 200
        # what http.client will not send: a broken request line, a foreign Host (DNS rebinding)
        answer = raw(server, b"GET / NOTHTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 400") and b'{"error": "Bad request version' in answer
        answer = raw(server, b"GET /api/info HTTP/1.1\r\nHost: evil.example:80\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 421") and b"is not this machine" in answer
        answer = raw(server, b"GET /api/info HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 200")
        answer = raw(server, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 414")
        assert request(server, "GET", "/api/info")[0] == 200


# 37 bytes of GIF whose screen and frame declare 65535 × 65535 pixels (4.3 Gpx), over twice Pillow's
# MAX_IMAGE_PIXELS: Image.open raises DecompressionBombError before the server reads the size itself.
GIF_BOMB = bytes.fromhex("474946383761ffffffff8000000000000000002c000000000100010000080400010404003b")


def test_bad_uploads_are_refused_by_content_and_size(services):
    tiff = png(np.zeros((8, 8, 3), np.uint8), "TIFF")
    bomb = png(np.zeros((5000, 5000), np.uint8))       # 25 Mpx of zeros: a few kB on the wire
    assert len(bomb) < 100_000
    whole = png(np.full((32, 32, 3), 200, np.uint8))
    cases = [
        (b"", {}, 400, "the request body is empty"),
        (b"not an image at all", {"Content-Type": "image/png"}, 415, "not an image this server reads"),
        (tiff, {"Content-Type": "image/png"}, 415, "not an image this server reads"),
        (whole[:len(whole) // 2], {}, 415, "could not be decoded"),
        (bomb, {}, 413, "the limit is 16,777,216 pixels"),
        (GIF_BOMB, {}, 413, "the limit is 16,777,216 pixels"),     # Pillow itself refuses it at open
        (b"\0" * (MAX_UPLOAD_BYTES + 1), {}, 413, "the limit is 4,194,304 bytes"),
    ]
    with running(services["tr"]) as server:
        for body, headers, status, message in cases:
            got, _, answer = request(server, "POST", "/api/translate", body=body, headers=headers)
            assert got == status and message in json.loads(answer)["error"], (status, got, answer[:200])
        got, _, answer = request(server, "POST", "/api/translate?direction=BtoA", body=whole)
        assert got == 400 and "must be one of AtoB" in json.loads(answer)["error"]
        answer = raw(server, b"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 411")
        answer = raw(server, b"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 413")
        for length in ("²".encode(), b"9" * 5000):   # str.isdigit takes "²"; int() refuses over 4,300 digits
            answer = raw(server, b"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + length
                         + b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.0 400") and b"is not a byte count" in answer, answer[:200]
        for fmt in ("JPEG", "BMP", "WEBP", "GIF"):
            image = png(np.full((20, 20, 3), 90, np.uint8), fmt)
            got, headers, answer = request(server, "POST", "/api/translate", body=image)
            assert got == 200 and headers["Content-Type"] == "image/png" and pixels(answer).shape == (32, 32), fmt
        assert request(server, "GET", "/api/sample")[0] == 400        # a translator draws no samples


def test_an_exception_in_a_handler_is_a_500_and_the_server_keeps_serving(services, monkeypatch, capsys):
    svc = services["gen"]

    def broken(**kw):
        raise RuntimeError("boom in /some/secret/path")

    with running(svc) as server:
        monkeypatch.setattr(svc, "sample", broken)
        got, _, body = request(server, "GET", "/api/sample?seed=1")
        assert got == 500
        err = json.loads(body)["error"]
        assert "internal error (RuntimeError)" in err and "secret" not in err and "Traceback" not in err
        monkeypatch.undo()
        assert request(server, "GET", "/api/sample?seed=1")[0] == 200
    assert "boom in /some/secret/path" in capsys.readouterr().err     # the details stay in the server's log


@contextmanager
def one_busy_worker(svc, monkeypatch):
    """A server with one worker and no queue, that worker held inside a sample request; yields the
    server and ``free()``, which lets the held request finish (answered 200), as the block's end does."""
    entered, release = threading.Event(), threading.Event()
    original = svc.sample

    def slow(**kw):
        entered.set()
        release.wait(20)
        return original(**kw)

    monkeypatch.setattr(svc, "sample", slow)
    with running(svc, workers=1, queue=0) as server:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(request, server, "GET", "/api/sample?seed=2")
            assert entered.wait(10)

            def free():
                release.set()
                assert first.result(10)[0] == 200

            try:
                yield server, free
            finally:
                free()


def test_beyond_the_workers_and_the_queue_a_request_gets_503(services, monkeypatch):
    with one_busy_worker(services["gen"], monkeypatch) as (server, free):
        got, headers, body = request(server, "GET", "/api/info")       # the one worker is busy
        assert got == 503 and headers["Retry-After"] == "1" and "busy" in json.loads(body)["error"]
        free()
        # the slot frees before the answer is written, so the next request at once finds room
        assert request(server, "GET", "/api/info")[0] == 200
        assert server.rejected == 1


# ---- load ----------------------------------------------------------------------------------------
def percentiles(values, qs=(50, 90, 99)) -> dict:
    return {f"p{q}": float(np.percentile(values, q)) for q in qs}


def load_test(server, paths, concurrency=8):
    """Every path once, ``concurrency`` at a time; (path, status, body, seconds) in order."""
    def one(path):
        t = time.perf_counter()
        status, _, body = request(server, "GET", path)
        return path, status, body, time.perf_counter() - t

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, paths))


def test_200_requests_8_at_a_time_none_lost(services):
    svc = services["gen"]
    paths = [f"/api/sample?seed={i % 10}&n=4" if i % 2 else f"/api/walk?a={i % 10}&b=9&t={(i % 7) / 6:.3f}"
             for i in range(200)]
    with running(svc, workers=4) as server:
        results = load_test(server, paths)
        assert server.rejected == 0
    assert len(results) == 200 and [r[0] for r in results] == paths
    assert all(status == 200 for _, status, _, _ in results), [(p, s) for p, s, _, _ in results if s != 200]
    # none mixed up: every sample answer is the picture of its own seed (what `gankit sample --seed S -n 4`
    # draws), and every walk answer equals the others for the same (a, t)
    from gankit.viz.grids import image_grid
    want = {seed: image_grid(svc.model.sample(4, seed=seed)[0], nrow=2) for seed in range(10)}
    walks = {}
    for path, _, body, _ in results:
        got = pixels(body)
        if path.startswith("/api/sample"):
            seed = int(path.split("seed=")[1].split("&")[0])
            assert np.array_equal(got.reshape(want[seed].shape), want[seed]), path
        else:
            assert np.array_equal(walks.setdefault(path, got), got), path
    lat = percentiles([r[3] for r in results])
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    print("\nload test: 200 requests, 8 at a time: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in lat.items()))


# ---- other models, style mixing, the command --------------------------------------------------------
def test_a_2d_model_is_drawn_as_a_plot_with_its_walk(services, monkeypatch):
    # data that named its classes, on a model that does not take them: no class names to offer
    monkeypatch.setitem(services["vec"].model.data, "classes", ["a", "b"])
    with running(services["vec"]) as server:
        info = json.loads(request(server, "GET", "/api/info")[2])
        assert info["kind"] == "vector" and info["limits"]["n"] == [1, 5000] and info["limits"]["n_default"] == 1000
        assert info["num_classes"] == 0 and info["class_names"] == []
        for path in ("/api/sample?n=2000&truncation=1", "/api/walk?a=0&b=1&t=0.5"):
            got, headers, body = request(server, "GET", path)
            assert got == 200 and headers["Content-Type"] == "image/png"
            with Image.open(io.BytesIO(body)) as im:
                assert im.size == (450, 450) and json.loads(im.text["gankit"])["made_by"] == "gankit.serve"
        got, _, body = request(server, "GET", "/api/sample?class=1")
        assert got == 400 and "not conditional" in json.loads(body)["error"]


def test_served_pngs_carry_provenance(services):
    with running(services["gen"]) as server:
        body = request(server, "GET", "/api/sample?seed=12&truncation=0.7&n=4")[2]
    with Image.open(io.BytesIO(body)) as im:
        record = json.loads(im.text["gankit"])
    assert (record["made_by"], record["seed"], record["truncation"], record["step"]) == ("gankit.serve", 12, 0.7,
                                                                                          services["gen"].model.step)
    assert len(record["checkpoint_sha256"]) == 64


def test_style_mixing_on_a_style_run_is_gankit_mix_s(services):
    from gankit.steer.mixing import style_mixing

    svc = services["style"]
    m = svc.model
    with running(svc) as server:
        info = json.loads(request(server, "GET", "/api/info")[2])
        assert info["style_layers"] == m.G.num_ws > 2 and info["limits"]["truncation"] == [0.0, 1.0]
        got, headers, body = request(server, "GET", "/api/mix?a=1&b=2&crossover=2&truncation=0.5")
        assert got == 200 and headers["Content-Type"] == "image/png"
        assert request(server, "GET", f"/api/mix?crossover={m.G.num_ws + 1}")[0] == 400
        assert request(server, "GET", "/api/sample?truncation=0&n=2")[0] == 200   # a style G's average image
        class0 = request(server, "GET", "/api/mix?a=1&b=2&crossover=2&truncation=0.5&class=0")[2]
    assert m.num_classes >= 2                           # the tiny style run is conditional: no class is class 0,
    assert np.array_equal(pixels(body), pixels(class0))  # as the walk, and its provenance says so
    with Image.open(io.BytesIO(body)) as im:
        assert json.loads(im.text["gankit"])["label"] == 0
    za, zb = m.task.seeded(1, 1)["z"], m.task.seeded(1, 2)["z"]
    y = m.task.labels(1, 0)
    want = style_mixing(m.G, za, zb, 2, y, y, psi=0.5)["cells"][0, 0]
    assert np.array_equal(pixels(body), to_uint8(want)[0].numpy())
    assert not np.array_equal(pixels(body),
                              to_uint8(style_mixing(m.G, za, zb, 0, y, y, psi=0.5)["cells"][0, 0])[0].numpy())


@pytest.mark.parametrize("run,psi", [("style", 0.5), ("style", 0.0), ("gen", 0.6)])
def test_a_truncated_sample_is_what_gankit_sample_draws(runs, services, tmp_path, run, psi, capsys):
    from gankit.viz.grids import image_grid

    assert main(["sample", str(runs[run]), "--seed", "5", "-n", "4", "--truncation", str(psi),
                 "-o", str(tmp_path / "s.npz")]) == 0
    capsys.readouterr()
    want = image_grid(torch.from_numpy(np.load(tmp_path / "s.npz")["x"]), nrow=2)
    with running(services[run]) as server:
        got, _, body = request(server, "GET", f"/api/sample?seed=5&n=4&truncation={psi}")
    assert got == 200
    assert np.array_equal(pixels(body).reshape(want.shape), want)
    plain = image_grid(services[run].model.sample(4, seed=5)[0], nrow=2)
    assert not np.array_equal(plain, want)          # ψ did change the picture


def _default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal gives it. A job started in the background of a
    non-interactive shell (`cmd &`, as CI may run the suite) inherits SIGINT *ignored*, and Python
    then installs no KeyboardInterrupt handler: Ctrl-C could not be tested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_serve_command_prints_the_url_and_stops_cleanly_on_ctrl_c(runs, stop):
    proc = subprocess.Popen([sys.executable, "-m", "gankit", "serve", str(runs["tr"]), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=_default_sigint)
    try:
        first = proc.stdout.readline()
        assert " at http://127.0.0.1:" in first, (first, proc.stderr.read() if proc.poll() is not None else "")
        url = first.rsplit(" at ", 1)[1].strip()
        host, port = url[len("http://"):].rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/api/info")
        assert json.loads(conn.getresponse().read())["task"] == "translation"
        conn.close()
        proc.send_signal(getattr(signal, stop))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopping" in out and "Traceback" not in err


def test_stopping_cuts_a_stalled_connection_after_the_grace_period(services):
    """A client that sent half a request holds a worker for up to Handler.timeout (30 s); stopping the
    server must not wait for it: after the grace period the connection is cut and the worker joined."""
    import socket

    server = make_server(services["gen"], port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stalled = socket.create_connection(server.server_address[:2], timeout=30)
    stalled.sendall(b"GET /api/info HTTP/1.0\r\n")          # no blank line: the request never ends
    for _ in range(500):                                      # until a worker is reading it
        with server._lock:
            if server._open:
                break
        threading.Event().wait(0.01)
    assert server._open
    server.shutdown()
    closing = threading.Thread(target=server.server_close, kwargs={"grace": 0.2})
    closing.start()
    closing.join(10)                                          # Handler.timeout is 30 s
    assert not closing.is_alive() and not server._open
    assert stalled.recv(1024) == b""                          # the server closed its side
    stalled.close()
    thread.join(5)


def test_serve_command_refuses_bad_settings(runs, tmp_path, capsys):
    assert main(["serve", str(runs["tr"]), "--workers", "0"]) == 2
    assert "--workers 0: must be at least 1" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--port", "0"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nope"), "--port", "0"]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    assert main(["export", str(runs["vec"]), "--format", "folder", "-o", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["serve", str(tmp_path / "m"), "--checkpoint", "best", "--port", "0"]) == 2   # one model: no best
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint best" in err[0] and "model folder" in err[0], err


@pytest.mark.parametrize("host", ["127.0.0.1", "not-a-host.invalid"])
def test_a_port_or_host_that_cannot_be_bound_is_one_line_and_exit_2(runs, host, capsys):
    """The bind fails inside HTTPServer.__init__, which calls server_close before the pool existed:
    an AttributeError traceback instead of make_server's line."""
    with socket.socket() as held:                      # port P taken by another listener
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["serve", str(runs["vec"]), "--host", host, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    if host == "127.0.0.1":
        assert len(err) == 1 and f"--host {host} --port {port}: cannot listen there" in err[0], err
        assert "--port 0 picks a free one" in err[0]
    else:                                              # the name does not resolve: the host is at fault
        assert len(err) == 1 and f"--host {host}: cannot listen there" in err[0], err
        assert "give an address of this machine" in err[0]


@pytest.mark.parametrize("host", ["127.0.0.2", "127.1"])
def test_the_host_check_follows_the_address_bound(services, host):
    """127.0.0.2 is loopback too: its own URL must not be refused. "127.1" binds 127.0.0.1: loopback,
    so a foreign Host is still refused (DNS rebinding)."""
    with running(services["vec"], host=host) as server:
        bound, port = server.server_address[:2]
        assert server.loopback and bound == {"127.1": "127.0.0.1"}.get(host, host)
        answer = raw(server, f"GET /api/info HTTP/1.1\r\nHost: {bound}:{port}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
        answer = raw(server, b"GET /api/info HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 421"), answer[:200]


def test_a_request_must_arrive_whole_within_the_deadline(services, monkeypatch, capsys):
    """Handler.timeout bounds the whole request, not each read: a client dripping a byte every 0.1 s
    (which a per-read timeout of 1 s never catches) is dropped after 1 s, well before its 100 bytes
    are sent; an upload that stops half-way is a 408 with one line and no traceback in the log."""
    import select

    from gankit.serve.server import Handler

    monkeypatch.setattr(Handler, "timeout", 1.0)
    with running(services["tr"]) as server:
        with socket.create_connection(server.server_address[:2], timeout=10) as s:
            s.sendall(b"GET /api/info HTTP/1.0\r\nX-Drip: ")
            sent = dropped = 0
            while sent < 100 and not dropped:
                try:
                    s.sendall(b"a")
                except OSError:
                    dropped = True
                    break
                sent += 1
                if select.select([s], [], [], 0.1)[0]:
                    dropped = True
            assert dropped and sent < 100, sent
        answer = raw(server, b"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
                             b"12345678")
        assert answer.startswith(b"HTTP/1.0 408") and b"the upload stalled" in answer, answer[:200]
        assert request(server, "GET", "/api/info")[0] == 200
    assert "Traceback" not in capsys.readouterr().err


def test_connections_beyond_the_queue_get_503_without_waiting_for_them(services, monkeypatch):
    """60 connections that send nothing, beyond a busy single worker: the accepting thread must not
    wait for what each might send (it waited 0.2 s each: 12 s before the next client heard anything;
    this client gives up after 5 s)."""
    with one_busy_worker(services["gen"], monkeypatch) as (server, _):
        idle = [socket.create_connection(server.server_address[:2], timeout=10) for _ in range(60)]
        try:
            conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
            conn.request("GET", "/api/info")
            res = conn.getresponse()
            assert res.status == 503 and res.getheader("Retry-After") == "1"
            conn.close()
            for s in (idle[0], idle[-1]):           # the silent ones were answered too
                assert s.recv(65536).startswith(b"HTTP/1.0 503")
        finally:
            for s in idle:
                s.close()
    assert server.rejected == 61


def test_non_square_models_are_served_at_their_shape(tmp_path):
    """A 16×32 generator and a 32×64 translator: pictures keep H ≠ W, uploads are resized to (H, W)."""
    train("dcgan-digits", ["data.resolution=[16, 32]", "model.g.width=8", "model.d.width=8", "train.batch_size=16",
                           "train.steps=2", *TINY], out=tmp_path / "g", quiet=True)
    train("pix2pix-edges2fashion", ["data.resolution=[32, 64]", "data.limit=16", "model.g.width=8", "model.d.width=8",
                                    "train.batch_size=8", "train.minutes=null", "train.steps=2", *TINY],
          out=tmp_path / "t", quiet=True)
    gen, tr = ModelService(load(tmp_path / "g")), ModelService(load(tmp_path / "t"))
    assert pixels(gen.walk(a=0, b=1, t=0.5, label=None, truncation=None)).shape == (16, 32)
    assert pixels(gen.sample(seed=0, label=None, truncation=0.5, n=4)).shape == (2 * 18 + 2, 2 * 34 + 2)
    assert pixels(tr.translate(png(np.zeros((50, 50, 3), np.uint8)))).shape == (32, 64)
