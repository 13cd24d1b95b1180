"""Style-mixing grids (gankit/steer/mixing.py, gankit.steer.mixing.mix, `gankit mix`) on the real style generators."""
import pytest
import torch
from PIL import Image

from gankit.api import load
from gankit.cli.main import main
from gankit.config import load_config
from gankit.errors import GankitError
from gankit.nets.stylegan import StyleGAN2Generator, StyleGANGenerator
from gankit.steer.mixing import default_coarse, grid_tiles, mix, mix_ws, style_mixing
from gankit.train.run import train

TINY = ["train.steps=2", "train.minutes=null", "health.enabled=false", "train.precision=fp32", "train.batch_size=8"]
STYLE2 = ["model.arch=stylegan2", "loss.objective=stylegan",
          "model.g={width: 128, max_width: 16, w_dim: 16, mapping_layers: 2}", "model.d={width: 128, max_width: 16}"]


def close(a, b):
    """Equal up to float32 rounding that depends on the batch size (a cell is made in a batch of C,
    the reference alone): measured ≤ 5e-5 on outputs up to 16 in magnitude; a wrong style moves
    pixels by O(1)."""
    return torch.allclose(a, b, rtol=1e-5, atol=2e-4)


def tiny(family):
    torch.manual_seed(0)
    cls = {"stylegan": StyleGANGenerator, "stylegan2": StyleGAN2Generator}[family]
    G = cls(z_dim=8, sample_shape=(1, 16, 16), w_dim=16, mapping_layers=2, width=128, max_width=16).eval()
    G.w_avg.normal_()  # a mean other than zero, as after training
    return G


@pytest.mark.parametrize("family,sides", [("stylegan", [4, 4, 8, 8, 16, 16]), ("stylegan2", [4, 8, 8, 16, 16, 16])])
def test_default_coarse_counts_the_styles_at_sides_up_to_8(family, sides):
    G = tiny(family)
    assert G.ws_resolution == sides                                    # the spec's layout at 16x16
    assert default_coarse(G) == sum(s <= 8 for s in sides)


def test_mix_ws_takes_coarse_from_rows_and_fine_from_columns():
    a, b = torch.randn(2, 6, 4), torch.randn(3, 6, 4)
    m = mix_ws(a, b, 2)
    assert m.shape == (2, 3, 6, 4)
    for i in range(2):
        for j in range(3):
            assert torch.equal(m[i, j], torch.cat([a[i, :2], b[j, 2:]]))


@pytest.mark.parametrize("family", ["stylegan", "stylegan2"])
def test_cells_are_the_synthesis_of_hand_mixed_styles(family):
    G = tiny(family)
    g = torch.Generator().manual_seed(0)
    zr, zc = torch.randn(3, 8, generator=g), torch.randn(4, 8, generator=g)
    out = style_mixing(G, zr, zc, coarse=2)
    assert out["cells"].shape == (3, 4, 1, 16, 16) and out["coarse"] == 2
    with torch.no_grad():
        wr, wc = G.mapping(zr), G.mapping(zc)
        for i in range(3):
            for j in range(4):
                ws = torch.cat([wr[i].expand(2, -1), wc[j].expand(G.num_ws - 2, -1)]).unsqueeze(0)
                assert close(out["cells"][i, j], G.synthesis(ws, noise_mode="const")[0])
        assert close(out["rows"], G.synthesis(wr.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const"))
    assert not close(out["cells"][0, 0], out["cells"][0, 1])          # the fine styles matter
    assert not close(out["cells"][0, 0], out["cells"][1, 0])          # and the coarse ones

    every = style_mixing(G, zr, zc, coarse=G.num_ws)                  # all styles from the row source
    none = style_mixing(G, zr, zc, coarse=0)                          # all from the column source
    for j in range(4):
        assert close(every["cells"][:, j], every["rows"])
        assert close(none["cells"][:, j], none["cols"][j].expand_as(none["rows"]))
    with pytest.raises(GankitError, match=f"coarse=7: this generator has {G.num_ws} style inputs"):
        style_mixing(G, zr, zc, coarse=7)


def test_grid_tiles_layout():
    mixed = {"rows": torch.full((2, 1, 4, 4), 0.5), "cols": torch.full((3, 1, 4, 4), -0.5),
             "cells": torch.arange(6.0).view(2, 3, 1, 1, 1).expand(2, 3, 1, 4, 4) / 10}
    t = grid_tiles(mixed)
    assert t.shape == (12, 1, 4, 4)
    assert (t[0] == 0).all() and (t[1:4] == -0.5).all()               # blank corner, column sources on top
    assert (t[4] == 0.5).all() and (t[8] == 0.5).all()                # row sources down the first column
    assert torch.equal(t[5:8, 0, 0, 0], torch.tensor([0.0, 0.1, 0.2])) and torch.equal(t[9:12, 0, 0, 0], torch.tensor([0.3, 0.4, 0.5]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    sg = train(load_config("dcgan-digits", TINY + STYLE2), out=root / "sg", quiet=True)
    dc = train(load_config("dcgan-digits", TINY + ["model.g.width=8", "model.d.width=8"]), out=root / "dc", quiet=True)
    return {"stylegan2": sg.dir, "dcgan": dc.dir}


def test_api_mix_writes_the_grid_of_the_seeded_sources(runs, tmp_path):
    out = mix(runs["stylegan2"], tmp_path / "m.png", rows=2, cols=3, seed=4)
    model = load(runs["stylegan2"])
    g = torch.Generator().manual_seed(4)
    a, b = model.task.draw(2, g), model.task.draw(3, g)
    expected = grid_tiles(style_mixing(model.G, a["z"], b["z"]))
    from gankit.viz.grids import image_grid
    grid = image_grid(expected, nrow=4)                                 # (H', W', C) uint8
    img = Image.open(out)
    scale = img.width // grid.shape[1]
    assert scale >= 1 and img.size == (grid.shape[1] * scale, grid.shape[0] * scale)
    import numpy as np
    assert np.array_equal(np.asarray(img)[::scale, ::scale], grid[..., 0])   # the same pixels, enlarged
    with pytest.raises(GankitError, match="style mixing needs a style generator"):
        mix(runs["dcgan"], tmp_path / "d.png")


def test_mix_cli(runs, tmp_path, capsys):
    out = tmp_path / "cli.png"
    assert main(["mix", str(runs["stylegan2"]), "-o", str(out), "--rows", "2", "--cols", "2", "--coarse", "1"]) == 0
    assert out.exists()
    capsys.readouterr()
    assert main(["mix", str(runs["dcgan"]), "-o", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "style generator" in err[0] and not (tmp_path / "d.png").exists()


def test_mix_takes_projected_latents_as_sources(runs, tmp_path, capsys):
    """`gankit mix --row-latents`: the row sources are the projected images' ws (rendered with the constant
    noise, untruncated), the columns still drawn from the seed; a latent of another checkpoint is refused."""
    from gankit.steer.mixing import drawn_ws, mix_sources
    from gankit.steer.projection import project, projected_start, read_projected
    from gankit.viz.grids import image_grid
    import numpy as np

    model = load(runs["stylegan2"])
    for i in range(2):  # two "photos": samples of the model, saved as PNGs
        img = ((model.sample(1, seed=10 + i)[0][0, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        Image.fromarray(img).save(tmp_path / f"p{i}.png")
    spaces = {"p0": "w", "p1": "w+"}
    latents = []
    for name, space in spaces.items():
        project(runs["stylegan2"], tmp_path / f"{name}.png", tmp_path / "proj", steps=2, space=space,
                w_avg_samples=100, features="none")
        latents.append(tmp_path / "proj" / f"{name}-latent.safetensors")
    out = tmp_path / "mine.png"
    assert main(["mix", str(runs["stylegan2"]), "-o", str(out), "--row-latents", *map(str, latents),
                 "--cols", "3", "--seed", "4", "--truncation", "0.5", "--coarse", "2"]) == 0
    capsys.readouterr()
    ws_rows = torch.cat([projected_start(model.G, read_projected(model, f)) for f in latents])
    drawn = model.task.draw(3, torch.Generator().manual_seed(4))       # the rows take no draws
    ws_cols = drawn_ws(model.G, drawn["z"], drawn["y"], 0.5)
    expected = mix_sources(model.G, ws_rows, ws_cols, 2)
    grid = image_grid(grid_tiles(expected), nrow=4)
    img = Image.open(out)
    scale = img.width // grid.shape[1]
    assert img.size == (grid.shape[1] * scale, grid.shape[0] * scale)
    assert np.array_equal(np.asarray(img)[::scale, ::scale], grid[..., 0])   # rows from the latents, as computed
    untruncated = mix_sources(model.G, ws_rows, drawn_ws(model.G, drawn["z"], drawn["y"], 1.0), 2)
    assert not torch.equal(untruncated["cols"], expected["cols"])           # ψ reached the drawn columns
    assert (expected["rows"][0] - expected["rows"][1]).abs().max() > 1e-3    # two different sources
    from gankit.provenance import read_provenance
    assert read_provenance(out)["row_latents"] == ["p0-latent.safetensors", "p1-latent.safetensors"]

    other = train(load_config("dcgan-digits", TINY + STYLE2 + ["seed=1"]), out=tmp_path / "other", quiet=True)
    assert main(["mix", str(other.dir), "-o", str(tmp_path / "x.png"), "--col-latents", str(latents[0])]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "p0-latent.safetensors: projected with" in err and not (tmp_path / "x.png").exists()
    assert main(["mix", str(runs["stylegan2"]), "-o", str(tmp_path / "y.png"), "--row-latents", "nope.safetensors"]) == 2
    assert capsys.readouterr().err.strip() == "gankit: error: --row-latents nope.safetensors: no such file"
