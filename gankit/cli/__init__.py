"""The ``gankit`` command line: one module per subcommand (``main.py`` registers them)."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a batch size, a count of windows or steps)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return value
