"""``gankit serve``: a local web page over a trained run — samples, latent walks, translation.

:func:`serve` loads the model once and serves until Ctrl-C; :func:`make_server` gives a bound
server to run in a thread (tests, notebooks). See ``docs/serve.md``."""
from .server import GankitServer, make_server, serve
from .service import ModelService

__all__ = ["GankitServer", "ModelService", "make_server", "serve"]
