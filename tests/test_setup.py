"""scripts/setup.sh on a Python its distribution manages (PEP 668): one line on how to make a venv, nothing installed."""
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

# python3 as setup.sh sees it: the real interpreter, whose stdlib folder holds EXTERNALLY-MANAGED (or not) and
# which runs outside a virtual environment; anything but `-c CODE` (pip) is recorded and does nothing.
FAKE_PYTHON = """#!{python}
import os, sys, sysconfig
log = os.environ["FAKE_LOG"]
if sys.argv[1:2] != ["-c"]:
    open(log, "a").write("python3 " + " ".join(sys.argv[1:]) + "\\n")
    sys.exit(0)
stdlib = os.environ["FAKE_STDLIB"]
real = sysconfig.get_path
sysconfig.get_path = lambda name, *a, **k: stdlib if name == "stdlib" else real(name, *a, **k)
sys.base_prefix = sys.prefix  # not in a virtual environment
code = sys.argv[2]
sys.argv = ["-c"] + sys.argv[3:]
exec(compile(code, "<string>", "exec"))
"""
RECORD = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> \"$FAKE_LOG\"\n"


def run_setup(tmp_path, managed: bool):
    bin_dir, stdlib = tmp_path / "bin", tmp_path / "stdlib"
    bin_dir.mkdir()
    stdlib.mkdir()
    if managed:
        (stdlib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=use a venv\n")
    (bin_dir / "python3").write_text(FAKE_PYTHON.format(python=sys.executable))
    for name in ("apt-get", "sudo", "nvidia-smi"):
        (bin_dir / name).write_text(RECORD)
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    log = tmp_path / "log"
    log.touch()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", FAKE_LOG=str(log), FAKE_STDLIB=str(stdlib))
    out = subprocess.run(["bash", str(ROOT / "scripts/setup.sh"), "--no-test"], env=env, capture_output=True,
                         text=True, timeout=120)
    return out, log.read_text()


def test_setup_stops_on_an_externally_managed_python(tmp_path):
    out, calls = run_setup(tmp_path, managed=True)
    assert out.returncode == 1
    assert calls == ""  # neither pip nor apt-get ran
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "PEP 668" in lines[0]
    assert "python3 -m venv" in lines[0] and "bin/activate" in lines[0] and "bash scripts/setup.sh" in lines[0]
    assert "--break-system-packages" not in out.stderr


def test_setup_goes_on_when_pip_may_install(tmp_path):
    # The same fake without EXTERNALLY-MANAGED reaches pip: the check above is what stopped it.
    out, calls = run_setup(tmp_path, managed=False)
    assert "python3 -m pip install -q -e ." in calls, (out.stderr, calls)
