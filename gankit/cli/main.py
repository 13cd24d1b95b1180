"""``gankit`` command line: registers one small module per subcommand."""
from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from typing import List, Optional

from ..errors import GankitError, Interrupted, command_line
from . import (animate_cmd, bench_cmd, data_cmd, detect_cmd, eval_cmd, export_cmd, features_cmd, inspect_cmd,
               mix_cmd, recipes_cmd, report_cmd, sample_cmd, score_cmd, serve_cmd, train_cmd, translate_cmd,
               truncation_cmd)
from . import edit_cmd, project_cmd

_OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")  # train.steps=100: a config override without its --set

# A full disk, a read-only or foreign folder: the user's to fix, said in one line, not a traceback.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

COMMANDS = [recipes_cmd, train_cmd, sample_cmd, translate_cmd, report_cmd, eval_cmd, features_cmd, bench_cmd,
            export_cmd, serve_cmd, animate_cmd, inspect_cmd, detect_cmd, score_cmd, data_cmd, truncation_cmd, mix_cmd,
            project_cmd, edit_cmd]


def build_parser() -> argparse.ArgumentParser:
    from ..version import __version__

    parser = argparse.ArgumentParser(prog="gankit", description="Train, sample and evaluate GANs.")
    parser.add_argument("--version", action="version", version=f"gankit {__version__}")
    parser.add_argument("--trust-plugins", action="store_true",
                        help="import the plugins a model folder's config.json names (modules of code: they run "
                             "on import; without this such a folder is refused): gankit --trust-plugins sample DIR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for cmd in COMMANDS:
        cmd.register(sub)
    parser.set_defaults(subparsers=sub.choices)  # name -> its parser, for errors found after parsing
    return parser


def _intermixed(args: argparse.Namespace, extra: List[str]) -> List[str]:
    """Give the command's list of INPUTs the file names argparse left over after an option
    (``score RUN a.png --npz x.npz b.png``); returns what is still unrecognised."""
    if not extra or any(a.startswith("-") for a in extra):
        return extra
    lists = [a.dest for a in args.subparsers[args.command]._actions
             if not a.option_strings and a.nargs in ("*", "+")]
    if len(lists) != 1:
        return extra
    setattr(args, lists[0], list(getattr(args, lists[0]) or []) + extra)
    return []


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # `gankit` alone: what it can do, not one error line
        parser.print_help(sys.stderr)
        return 2
    args, extra = parser.parse_known_args(argv)
    extra = _intermixed(args, extra)
    if extra:
        overrides = [a for a in extra if _OVERRIDE.match(a)]
        hint = (f" (each override needs its own --set: {' '.join('--set ' + a for a in overrides)})"
                if overrides and hasattr(args, "overrides") else "")
        args.subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    try:
        from contextlib import nullcontext

        from ..model_folder import trusting_plugins

        # messages name options as flags (--tile 8), not keywords (tile=8)
        with command_line(), (trusting_plugins() if args.trust_plugins else nullcontext()):
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader gone before the last lines is handled below
        return code
    except BrokenPipeError:  # `gankit score RUN DIR | head`: the reader has what it wanted; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would raise it again
        return 141  # 128 + SIGPIPE, as a tool killed by the signal reports
    except Interrupted as e:  # a checkpoint was written; 130 for SIGINT, 143 for SIGTERM
        print(f"gankit: {e}", file=sys.stderr)
        return e.exit_code
    except GankitError as e:
        print(f"gankit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = ("; the last checkpoint is kept (resume with gankit train --resume RUN_DIR)"
                if args.command == "train" else "")
        print(f"gankit: interrupted{kept}", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in _DISK_ERRORS:
            raise
        kept = ("; a run keeps the last checkpoint it wrote: make room (or fix the permissions) and resume it"
                if args.command == "train" else "")
        print(f"gankit: error: {e.filename or 'writing'}: {e.strerror}{kept}", file=sys.stderr)
        return 2
