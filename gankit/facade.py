"""A package that is also the function it is named after: ``gankit.train(...)`` and ``gankit.recipes()``.

Importing a submodule (``gankit.train.run``) binds the attribute ``gankit.train`` to the package,
so the package itself must be callable. Its signature and docstring are the function's, so
``help(gankit.train)``, ``inspect.signature`` and a notebook's Shift-Tab show the arguments.
"""
import inspect
import sys
import types
from importlib import import_module


def make_callable(package: str, module: str, function: str) -> None:
    """Make the package ``package`` call ``function`` of its submodule ``module`` (imported on first use)."""
    def target(self):
        return getattr(import_module(module, package), function)

    class CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return target(self)(*args, **kwargs)

        @property
        def __signature__(self):
            return inspect.signature(target(self))

        @property
        def __doc__(self):
            return target(self).__doc__

    sys.modules[package].__class__ = CallablePackage
