"""gankit recipes: list the shipped recipes."""


def register(sub):
    p = sub.add_parser("recipes", help="list the shipped recipes", description="List the shipped recipes.")
    p.set_defaults(func=run)


def run(args):
    from ..recipes import recipe_descriptions

    items = recipe_descriptions()
    width = max(len(n) for n in items)
    for name, desc in items.items():
        print(f"{name:<{width}}  {desc}")
