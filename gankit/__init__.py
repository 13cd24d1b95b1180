"""gankit: generative adversarial networks, trained, diagnosed and evaluated honestly."""
__version__ = "0.1.0"

from .api import GAN, load, sample  # noqa: E402
from .config import Config, load_config  # noqa: E402
from .errors import GankitError  # noqa: E402
from .metrics import evaluate  # noqa: E402
from .recipes import recipe_names as recipes  # noqa: E402
from .train.run import train  # noqa: E402

__all__ = ["GAN", "Config", "GankitError", "evaluate", "load", "load_config", "recipes", "sample", "train",
           "__version__"]
