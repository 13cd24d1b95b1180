"""gankit recipes: list the shipped recipes, print one, or print one resolved with every default."""


def register(sub):
    p = sub.add_parser(
        "recipes", help="list the shipped recipes; print one (`gankit recipes NAME > my.yaml`)",
        description="List the shipped recipes. With NAME (a recipe or a .yaml file), print its file as it "
                    "is, comments included, to start your own from (`gankit recipes fast-fashion-mnist > my.yaml`); "
                    "with --resolved, print every setting `gankit train NAME` would use, defaults and --set "
                    "overrides included.")
    p.add_argument("recipe", nargs="?", metavar="NAME", help="a recipe name or a .yaml file to print")
    p.add_argument("--resolved", action="store_true",
                   help="print the whole config train would use: every key, defaults filled in, --set applied")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value before printing (implies --resolved); repeatable")
    p.set_defaults(func=run)


def run(args):
    from ..errors import GankitError

    if args.recipe is None:
        if args.resolved or args.overrides:
            raise GankitError("--resolved and --set need a recipe: gankit recipes NAME --resolved "
                              "(gankit recipes lists the names)")
        return _list()
    from ..config import config_path, load_config
    from ..version import __version__

    path = config_path(args.recipe)  # one line for an unknown name, a folder, a missing file
    if not (args.resolved or args.overrides):
        print(path.read_text(), end="")
        return
    cfg = load_config(args.recipe, args.overrides)  # checked as train checks it
    command = " ".join(["gankit recipes", args.recipe, "--resolved"] + [f"--set {o}" for o in args.overrides])
    print(f"# {command} (gankit {__version__}): every setting `gankit train` would use, defaults included")
    print(cfg.to_yaml(), end="")


def _list():
    from ..recipes import recipe_descriptions

    items = recipe_descriptions()
    width = max(len(n) for n in items)
    for name, desc in items.items():
        print(f"{name:<{width}}  {desc}")
