"""The README and docs/ as a user reads them: every `gankit` command in a shell block parses, and a
`gankit train` of a shipped recipe accepts its --set overrides; every relative link, script and file
path they name exists. A renamed flag, key, recipe or file fails here instead of in a user's shell."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from gankit.cli.main import build_parser, main
from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.recipes import recipe_names, recipe_path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
STARTS = {"gankit", "python", "python3", "torchrun", "bash", "cd", "export", "time", "nohup"}  # a command line's first word
ILLUSTRATIVE = {"gankit/nets/myfamily.py", "gankit/objectives/mymodel.py"}  # docs/engine.md: "add a model" names


def _commands():
    """(page, line, argv after `gankit`, the error it shows or None) for each command in a fenced shell
    block; lines that show output (`gankit 0.1.0` in a card) or use shell variables and `...` are not
    commands to parse. A transcript line `$ gankit ...` followed by `gankit: error: ...` shows a refusal."""
    out = []
    for page in PAGES:
        for lang, block in FENCE.findall(page.read_text()):
            if lang not in ("", "bash", "sh", "console"):
                continue
            lines = block.replace("\\\n", " ").splitlines()
            for n, line in enumerate(lines):
                shown = lines[n + 1] if line.startswith("$ ") and n + 1 < len(lines) else ""
                refusal = shown[len("gankit: error: "):] if shown.startswith("gankit: error: ") else None
                try:  # a line of output (prose, a table, a card) is not a command: it starts with none
                    first = shlex.split(line.lstrip("$ "), comments=True)[:1]
                except ValueError:
                    continue
                if not first or first[0] not in STARTS and "=" not in first[0]:
                    continue
                for part in re.split(r"&&|\|\||;", line.lstrip("$ ")):
                    if "$" in part or "..." in part:
                        continue
                    try:
                        toks = shlex.split(part, comments=True)
                    except ValueError:
                        continue
                    cut = [j for j, t in enumerate(toks) if t in ("|", "<") or t.lstrip("0123456789&").startswith(">")]
                    toks = toks[:cut[0]] if cut else toks  # `gankit recipes NAME > my.yaml`: the shell's, not gankit's
                    if "gankit" not in toks:
                        continue
                    i = toks.index("gankit")
                    if (i == 0 and len(toks) > 1 and not toks[1][0].isdigit()) or (i > 0 and toks[i - 1] == "-m"):
                        out.append((page.name, line.strip(), toks[i + 1:], refusal))
    return out


COMMANDS = _commands()


def test_the_pages_show_commands_of_every_kind():
    """The scan finds the commands (a broken fence pattern would find none and pass everything)."""
    assert len(COMMANDS) > 100
    seen = {argv[0] for _, _, argv, _ in COMMANDS}
    assert {"train", "sample", "eval", "translate", "export", "serve"} <= seen


@pytest.mark.parametrize("page,line,argv,refusal", COMMANDS,
                         ids=[f"{p}:{' '.join(a)[:60]}" for p, _, a, _ in COMMANDS])
def test_a_documented_command_parses(page, line, argv, refusal):
    """... and where the page shows the command refused, it is refused with the line shown."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit as e:
        assert not e.code, f"{page}: `{line}` does not parse: {err.getvalue().strip().splitlines()[-1]}"
        return  # --help, --version
    if args.command == "train" and args.recipe in recipe_names():
        try:
            load_config(recipe_path(args.recipe), args.overrides)
        except ConfigError as e:
            assert str(e) == refusal, f"{page}: `{line}` is refused: {e}"
        else:
            assert refusal is None, f"{page}: `{line}` is shown refused ({refusal}) but is accepted"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _prose(page: Path) -> str:
    return FENCE.sub("", page.read_text())


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_what_a_page_links_and_names_exists(page):
    text, missing = _prose(page), []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = page.parent / path if path else page
        if not dest.exists():
            missing.append(f"link {target}")
        elif anchor and dest.suffix == ".md" and anchor not in {
                _slug(h) for h in re.findall(r"^#+\s+(.*)$", _prose(dest), re.M)}:
            missing.append(f"anchor {target}")
    raw = page.read_text()
    named = set(re.findall(r"(?:python3? |bash )((?:benchmarks|scripts)/[\w.]+)", raw))
    named |= set(re.findall(r"`((?:gankit|tests|benchmarks|scripts)/[\w/]+\.(?:py|sh|yaml))", raw)) - ILLUSTRATIVE
    missing += [f"file {p}" for p in sorted(named) if not (ROOT / p).exists()]
    for ref in set(re.findall(r"(tests/test_\w+\.py)::(\w+)", raw)):
        test_file = ROOT / ref[0]
        if not test_file.exists() or not re.search(rf"def {ref[1]}\b", test_file.read_text()):
            missing.append(f"test {'::'.join(ref)}")
    assert not missing, f"{page.name}: " + "; ".join(missing)


def test_overrides_given_to_one_set_are_named_in_the_error(capsys):
    """`--set a=1 b=2` (one --set for two overrides) is refused naming the --set each one needs."""
    with pytest.raises(SystemExit) as e:
        main(["train", "gan-ring8", "--set", "train.steps=1", "train.log_every=1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("gankit train: error: unrecognized arguments: train.log_every=1 "
                   "(each override needs its own --set: --set train.log_every=1)")
    with pytest.raises(SystemExit):
        main(["sample", "runs/x", "extra"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == "gankit sample: error: unrecognized arguments: extra"


def _python_blocks():
    return [(page.name, block) for page in PAGES for lang, block in FENCE.findall(page.read_text())
            if lang == "python"]


@pytest.mark.parametrize("page,block", _python_blocks(), ids=[f"{p}-{i}" for i, (p, _) in enumerate(_python_blocks())])
def test_a_documented_python_example_names_what_exists(page, block):
    """The Python examples need trained runs to execute, so they are read instead: every `from M import
    N` resolves, and every `gankit.f(...)` exists and accepts the keyword arguments the example gives."""
    import ast
    import importlib
    import inspect

    import gankit

    tree, wrong = ast.parse(block), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            wrong += [f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "gankit"):
            fn = getattr(gankit, node.func.attr, None)
            if fn is None:
                wrong.append(f"gankit.{node.func.attr}")
                continue
            params = inspect.signature(fn).parameters
            if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                wrong += [f"gankit.{node.func.attr}({k.arg}=)" for k in node.keywords if k.arg not in params]
    assert not wrong, f"{page}: the example names what does not exist: {', '.join(wrong)}"


def test_every_recipe_has_a_row_in_the_readme_s_measured_table():
    """README's "Every model, measured" names each shipped recipe (or a `*` pattern that covers it) in
    a table row: a measured number, or why there is none (audit §8)."""
    import fnmatch

    text = (ROOT / "README.md").read_text()
    section = text.split("## Every model, measured", 1)[1].split("\n## ", 1)[0]
    rows = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    named = set(re.findall(r"`([\w*-]+)`", rows))
    missing = [r for r in recipe_names() if not any(fnmatch.fnmatchcase(r, n) for n in named)]
    assert not missing, f"README's measured table has no row for {', '.join(missing)}"


def test_readme_s_stylegan2_row_is_the_shipped_recipe_s_raw_file_and_kid_is_not_said_scaled():
    """The model row quotes stylegan2-seed0.json (the recipe as shipped), not the pre-correction run;
    KID is gankit's raw MMD² everywhere, so no page says it is ×1000 (audit §2, §3)."""
    import json

    raw = json.loads((ROOT / "benchmarks/results/style/stylegan2-seed0.json").read_text())["scores"]
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| StyleGAN2 (Karras et al. 2020)"))
    assert f"FID {raw['fid']:.2f}, recall {raw['recall']:.3f}" in row
    for page in PAGES:
        assert not re.search(r"KID[^.\n]*×\s?1000|×\s?1000[^.\n]*KID", page.read_text()), page.name
