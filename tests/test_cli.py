"""Every subcommand answers --help; `python -m gankit` and the console script agree."""
import shutil
import subprocess
import sys

import pytest

from gankit.cli.main import build_parser, main


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_required_subcommands_exist():
    assert {"recipes", "train", "sample"} <= set(subcommands())


@pytest.mark.parametrize("cmd", subcommands())
def test_help(cmd, capsys):
    """Each subcommand's help, in this process (the parser is the one `gankit` builds); the real process
    is checked once below: a Python process importing torch costs seconds, 19 of them a fifth of a minute."""
    with pytest.raises(SystemExit) as stop:
        main([cmd, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: gankit {cmd}") and "options:" in out


def test_help_in_a_real_process_lists_every_subcommand():
    proc = subprocess.run([sys.executable, "-m", "gankit", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: gankit")
    listed = [line.split()[0] for line in proc.stdout.splitlines()
              if line.startswith("    ") and not line.startswith("     ")]   # "    name  help", not wrapped help
    assert sorted(listed) == subcommands()


def test_recipes_lists_one_line_each():
    proc = subprocess.run([sys.executable, "-m", "gankit", "recipes"], capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    from gankit.recipes import recipe_names
    assert [l.split()[0] for l in lines] == recipe_names()
    assert all(len(l.split(None, 1)) == 2 for l in lines)  # every recipe has a description


def test_recipes_name_prints_the_file_as_it_is(capsys):
    """`gankit recipes NAME > my.yaml` starts one's own recipe from the shipped file, comments included."""
    from gankit.recipes import recipe_path
    assert main(["recipes", "fast-fashion-mnist"]) in (0, None)
    assert capsys.readouterr().out == recipe_path("fast-fashion-mnist").read_text()


@pytest.mark.parametrize("name", __import__("gankit.recipes", fromlist=["recipe_names"]).recipe_names())
def test_recipes_resolved_loads_back_to_the_same_config(name, tmp_path, capsys):
    """--resolved prints every key train would use; that file, trained from, is the same config."""
    from gankit.config import load_config
    assert main(["recipes", name, "--resolved", "--set", "train.steps=7"]) in (0, None)
    text = capsys.readouterr().out
    assert text.startswith(f"# gankit recipes {name} --resolved --set train.steps=7")
    (tmp_path / "mine.yaml").write_text(text)
    resolved = load_config(tmp_path / "mine.yaml")
    assert resolved.to_dict() == load_config(name, ["train.steps=7"]).to_dict()
    assert resolved.train.steps == 7 and "health:" in text and "eval:" in text  # defaults written out


@pytest.mark.parametrize("argv,line", [
    (["recipes", "gan-rng8"], "gankit: error: no recipe or YAML file 'gan-rng8'; did you mean gan-ring8"),
    (["recipes", "gan-ring8", "--set", "train.stepz=7"], "gankit: error: --set train.stepz=7: unknown config key "
     "train.stepz; did you mean train.steps?"),
    (["recipes", "--resolved"], "gankit: error: --resolved and --set need a recipe"),
])
def test_recipes_bad_input_is_one_line(argv, line, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(line) and "\n" not in err


def test_console_script_installed():
    exe = shutil.which("gankit")
    assert exe, "the gankit console script is not on PATH (pip install -e .)"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("gankit ")


@pytest.mark.parametrize("command,raised,line", [
    (["sample", "RUN", "-o", "x.png"], OSError(28, "No space left on device", "/full/x.png"),
     "gankit: error: /full/x.png: No space left on device"),
    (["train", "gan-ring8"], OSError(30, "Read-only file system", "runs/x"),
     "gankit: error: runs/x: Read-only file system; a run keeps the last checkpoint it wrote: make room "
     "(or fix the permissions) and resume it"),
    (["sample", "RUN"], KeyboardInterrupt(), "gankit: interrupted"),
    (["train", "gan-ring8"], KeyboardInterrupt(),
     "gankit: interrupted; the last checkpoint is kept (resume with gankit train --resume RUN_DIR)"),
])
def test_a_full_disk_or_ctrl_c_is_one_line_that_fits_the_command(monkeypatch, capsys, command, raised, line):
    """A full or read-only disk is the user's to fix: one line, exit 2, not a traceback; Ctrl-C speaks of
    checkpoints only where there are some."""
    import gankit.api
    import gankit.train.run

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(gankit.api, "sample", fail)
    monkeypatch.setattr(gankit.train.run, "train", fail)
    assert main(command) == (130 if isinstance(raised, KeyboardInterrupt) else 2)
    assert capsys.readouterr().err.strip() == line


def test_other_os_errors_are_not_dressed_up(monkeypatch):
    import gankit.api

    def fail(*args, **kwargs):
        raise OSError(5, "Input/output error")  # not the user's to fix by making room: keep the traceback

    monkeypatch.setattr(gankit.api, "sample", fail)
    with pytest.raises(OSError):
        main(["sample", "RUN"])


def test_a_reader_that_stops_early_ends_no_command_in_a_traceback():
    """`gankit score RUN DIR | head`: the pipe closes before gankit is done writing; it exits quietly."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "gankit", "recipes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait() == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
