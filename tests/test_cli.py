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


def test_console_script_installed():
    exe = shutil.which("gankit")
    assert exe, "the gankit console script is not on PATH (pip install -e .)"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("gankit ")
