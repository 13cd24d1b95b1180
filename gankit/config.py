"""Typed, frozen run configuration: YAML recipes -> dataclasses, with ``--set`` overrides.

Every key is checked before training starts: an unknown key or a value of the wrong
type fails with one line naming the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import yaml

from .errors import ConfigError, UnknownName


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion-mnist"          # key in gankit.data.DATASETS
    root: Optional[str] = None           # folder with the files; None = the dataset's default place
    # images: side length (square) or [H, W] after pad/resize/crop; None = native (docs/nonsquare.md)
    resolution: Optional[int | Tuple[int, int]] = None
    channels: Optional[int] = None       # images: 1 or 3; None = native
    size: int = 50_000                   # 1D/2D mixtures: number of points drawn once from the seed
    limit: Optional[int] = None          # use only the first N samples (quick tests)
    direction: str = "AtoB"              # translation data: AtoB (input A, target B) or BtoA (swapped)
    # labelled data: classes left out of the train split only (anomaly detection trains on the rest
    # and scores the test split with these as anomalies, docs/anomaly.md); () = keep every class
    # (indices, or a folder's sub-folder names: index = place among the sorted names)
    exclude_classes: Tuple[Union[int, str], ...] = ()
    # labelled data, train split only: keep this fraction of the images, class-stratified and drawn by
    # subset_seed (gankit/data/subsets.py; docs/synthetic_data.md); None = all of them
    subset_fraction: Optional[float] = None
    subset_seed: int = 0                 # which stratified subset subset_fraction keeps
    # options of the dataset named by `name`, checked by that dataset (unknown keys fail there); e.g. the
    # spectrogram settings and speakers of the audio data (docs/audio.md); {} = the dataset's defaults
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NetConfig:
    arch: str = "dcgan"                  # key in gankit.nets.NETWORKS: a family with a G and a D
    # Keyword arguments for the family's generator / discriminator constructors, for every
    # network of that role (G, or G_AB and G_BA); checked against their signatures.
    g: Dict[str, Any] = field(default_factory=dict)
    d: Dict[str, Any] = field(default_factory=dict)
    # Per network, by the objective's names (G, D; G_AB, G_BA, D_A, D_B): keyword arguments over
    # model.g / model.d, and optionally `arch` (another family for that one network).
    nets: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    z_dim: int = 100
    conditional: bool = False            # give G and D the class label (needs a labelled dataset)


@dataclass(frozen=True)
class RegularizerConfig:
    name: str = "r1"                     # key in gankit.losses.REGULARIZERS
    weight: float = 10.0
    every: int = 1                       # lazy regularisation: run as its own phase every N D-steps


@dataclass(frozen=True)
class LossConfig:
    name: str = "non-saturating"         # key in gankit.losses.LOSSES
    regularizers: Tuple[RegularizerConfig, ...] = ()
    clip_d_weights: Optional[float] = None  # WGAN weight clipping to [-c, c] after each D step
    objective: str = "gan"               # key in gankit.train.OBJECTIVES: gan | acgan | unrolled | pix2pix | cyclegan
    # The objective's own settings (e.g. pix2pix l1_weight, cyclegan cycle_weight), checked against
    # the objective's Options dataclass: unknown keys are rejected by name.
    options: Dict[str, Any] = field(default_factory=dict)
    augment: str = ""                    # DiffAugment policy for everything D sees, e.g. "color,translation,cutout"; "" = none
    unroll_steps: int = 5                # objective unrolled: k D updates G's loss looks through (Metz et al. 2017)
    aux_weight: float = 1.0              # objective acgan: weight of the class cross-entropy (Odena et al. 2017)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"                   # adam | rmsprop | sgd
    lr: float = 2e-4
    betas: Tuple[float, float] = (0.5, 0.999)  # Adam's only; sgd and rmsprop refuse any other value
    momentum: float = 0.0                # sgd's and rmsprop's (PyTorch's default 0); adam refuses any other
    weight_decay: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    steps: Optional[int] = None          # number of generator updates (takes precedence over epochs)
    epochs: Optional[float] = None       # passes over the data, counted in D-step batches
    minutes: Optional[float] = None      # stop after this much wall time (any bound that comes first)
    batch_size: int = 64
    d_steps: int = 1                     # k discriminator steps per generator step (Goodfellow et al. 2014, Alg. 1)
    g_optim: OptimConfig = OptimConfig()  # short form: the optimiser of the generator(s), `optim.G`
    d_optim: OptimConfig = OptimConfig()  # short form: the optimiser of the discriminator(s), `optim.D`
    # Optimisers by the objective's names (G, D, ...); a name given here replaces its short form.
    optim: Dict[str, OptimConfig] = field(default_factory=dict)
    # Learning rates × schedule(progress), progress = fraction of the budget (steps or minutes) spent;
    # see gankit/train/schedules.py. constant | linear | cosine
    lr_schedule: str = "constant"
    lr_decay_start: float = 0.0          # progress in [0, 1) where the decay begins
    lr_final: float = 0.0                # multiplier of both learning rates at the end of the budget
    # An optimiser that also takes a lazy regulariser's step (a phase every N steps, e.g. R1 every
    # 16) runs with lr × c and betas ** c, c = its regular steps / all its steps (StyleGAN2, App. B:
    # c = N / (N + 1)), so its moments keep the decay and step size of the regular steps alone.
    lazy_correction: bool = True
    ema: Optional[float] = None          # decay of an exponential moving average of G's weights; None = off
    ema_start: int = 0                   # G-step from which the EMA tracks (copies G before that)
    # EMA half-life ramp-up (StyleGAN2-ADA's ema_rampup): the half-life in steps is at most this
    # fraction of the steps done, so early on the average covers only recent, better weights; null = off.
    ema_rampup: Optional[float] = None
    device: str = "auto"                 # auto | cpu | cuda | cuda:N; auto: $GANKIT_DEVICE if set, else CUDA when available
    precision: str = "fp32"              # fp32 | bf16 | fp16 | auto
    channels_last: Optional[bool] = None  # NHWC memory layout for conv nets; None = on for image data
    compile: bool = False                # torch.compile G's and D's forward (first steps pay the compile time)
    # auto | on | off (YAML's bare on/off read as true/false mean the same): replay whole steps as
    # CUDA graphs; auto: wherever the step can be captured, which is what on does too, but on says why not
    cuda_graphs: Union[str, bool] = "auto"
    log_every: int = 50                  # G-steps between metrics.jsonl records
    sample_every: Optional[int] = None   # G-steps between sample grids; None = once per epoch
    checkpoint_every: int = 1000         # G-steps between checkpoints (one is always written at the end)
    # Minutes of wall time between checkpoints, whichever of the two comes first; the first one is
    # written at the first metrics record, so a run is never long without one. None = steps only.
    checkpoint_minutes: Optional[float] = 5.0
    num_samples: int = 64                # fixed-noise samples in each grid
    # G-steps between snapshots of G and D in snapshots/ (vector data; gankit animate draws them);
    # None = off. At most snapshot_keep stay, evenly spread (gankit/train/snapshots.py).
    snapshot_every: Optional[int] = None
    snapshot_keep: int = 60
    threads: Optional[int] = None        # torch intra-op threads; None = PyTorch's default
    # Under torchrun (gankit/train/distributed.py); ignored in a single process:
    sync_batchnorm: bool = False         # BatchNorm statistics over the global batch (all ranks), not each rank's shard
    dist_timeout_s: float = 1800.0       # seconds a process waits for the others (rendezvous, each collective) before failing


@dataclass(frozen=True)
class HealthConfig:
    """The training-health monitor (gankit/train/health/): signals, thresholds, policies."""

    enabled: bool = True                 # diagnose the run on every log record (events.jsonl, health.json)
    window: int = 5                      # log records a diagnosis looks at (each averages train.log_every steps)
    warmup: int = 200                    # G-steps before any diagnosis but `diverged`
    grad_norms: bool = True              # measure gradient norms of G (per layer) and D on log steps
    samples: int = 256                   # generated and real samples for diversity signals; 0 = none
    collapse_diversity: float = 0.2      # mode_collapse: generated / real mean pairwise distance below this
    collapse_entropy: float = 0.5        # mode_collapse: generated / real nearest-mode histogram entropy below this
    vanishing_rel: float = 1e-3          # vanishing_gradients: G's gradient norm below this × G's weight norm ...
    vanishing_ratio: float = 0.01        # ... or below this × its largest window median so far
    spike_z: float = 4.0                 # unstable: a loss further than this many robust std devs from the window median
    oscillation: float = 0.5             # unstable: a loss's mean jump between records over (|median| + 0.1) above this
    swing: float = 0.3                   # unstable: mean change of D's accuracy on fake between records above this
    explode_factor: float = 100.0        # diverged: |loss| above this × its median over the previous window (≥ 1) ...
    explode_abs: float = 1000.0          # ... or above this (no registered loss gets near it in a working run)
    chance_tol: float = 0.05             # d_lost/converged: D's balanced accuracy within 0.5 ± this ...
    patience: int = 5                    # ... and no quality improvement for this many log records
    min_delta: float = 0.05              # relative drop of the energy distance that counts as an improvement
    on_converged: str = "stop"           # stop | warn: what d_lost / converged does
    on_diverged: str = "rollback"        # rollback (to the last healthy record, lower lr) | stop | warn
    max_rollbacks: int = 3               # rollbacks before the run stops at its last healthy state
    lr_factor: float = 0.5               # learning rates × this at each rollback
    on_vanishing: str = "warn"           # warn | non-saturating (switch a minimax loss) | instance-noise
    instance_noise: float = 0.1          # σ of instance noise on D's inputs (on_vanishing: instance-noise), annealed to 0


@dataclass(frozen=True)
class EvalConfig:
    every: Optional[int] = None          # G-steps between evaluations during training (and one at the end); None = off
    metrics: Tuple[str, ...] = ("fid",)  # keys in gankit.metrics.METRICS, e.g. [fid, kid, pr]
    n: int = 2000                        # generated samples per evaluation (and as many real ones from `split`)
    features: Optional[str] = None       # key in gankit.metrics.FEATURES; None = domain (images) or raw (vectors)
    split: str = "test"                  # reference split of the run's dataset
    score: Optional[str] = "fid"         # value that picks checkpoints/best (lower is better: fid, kid, rkl); None = none
    seed: int = 0                        # seed of the generated noise and of the real subset (same every evaluation)


@dataclass(frozen=True)
class Config:
    name: str = "custom"
    description: str = ""
    seed: int = 0
    # Your own modules, imported before the config is checked: the losses, regularisers, network
    # families, objectives and datasets they register become names the config can use (docs/engine.md)
    plugins: Tuple[str, ...] = ()
    data: DataConfig = DataConfig()
    model: NetConfig = NetConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    health: HealthConfig = HealthConfig()
    eval: EvalConfig = EvalConfig()

    def to_dict(self) -> dict:
        return _to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **overrides) -> "Config":
        """A copy with dotted-key overrides, e.g. ``cfg.replace(**{"train.steps": 10})``."""
        return _with_values(self, [(k, v, f"{k}={json.dumps(v)}") for k, v in overrides.items()])


def _to_plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (tuple, Tuple):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} values"
    if origin in (dict, Dict):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def coerce(value, tp, key: str):
    """Check ``value`` against type ``tp`` and convert (int->float, list->tuple, dict->dataclass)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (tuple, Tuple):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_type = typing.get_args(tp) or (str, Any)
        return {k: coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} at {key}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a plain dict, rejecting unknown keys by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(unknown_key(prefix, unknown[0], names))
    kwargs = {k: coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def did_you_mean(name, choices) -> str:
    """`` did you mean X?`` for the closest of ``choices`` to a misspelt ``name`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" did you mean {close[0]}?" if close else ""


def unknown_key(prefix: str, key, names) -> str:
    """The one line for an unknown key: the closest allowed name first, then all of them."""
    hint = did_you_mean(key, names)
    hint = f"; did you mean {prefix}{hint[len(' did you mean '):]}" if hint else ";"
    return f"unknown config key {prefix}{key!s}{hint} allowed keys here: {', '.join(names)}"


def merge(dst: dict, src: dict) -> dict:
    """Deep-merge ``src`` into ``dst`` (in place): a mapping goes into the mapping it meets, key by key;
    anything else (a value, a list) replaces what was there. How a section given by ``--set`` or by
    ``Config.replace`` combines with the recipe's: ``--set 'train={steps: 5}'`` changes steps alone."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = json.loads(json.dumps(v)) if isinstance(v, (dict, list)) else v
    return dst


def _check_override_keys(key: str, value, text: str) -> None:
    """Refuse a ``--set`` key (or a key of its mapping value) that is no field of the config, naming the
    override: the same unknown key in the YAML file is reported with the file's name."""
    tp = Config
    parts = key.split(".")
    for i, p in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            return  # a free-form mapping (model.g, data.options), a list index, ...: checked where it is used
        names = [f.name for f in dataclasses.fields(tp)]
        if p not in names:
            prefix = ".".join(parts[:i]) + "." if i else ""
            raise ConfigError(f"--set {text}: {unknown_key(prefix, p, names)}")
        tp = _section_type(typing.get_type_hints(tp)[p])
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        for k, v in value.items():
            _check_override_keys(f"{key}.{k}", v, text)


def _section_type(tp):
    """The dataclass inside ``Optional[...]``, or ``tp``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def set_dotted(tree: dict, key: str, value) -> None:
    """Set ``tree['a']['b'] = value`` for ``key='a.b'``; list items by index (``loss.regularizers.0.weight``).
    A mapping value deep-merges into the mapping already there (:func:`merge`), as Hydra and OmegaConf do;
    an empty mapping (``model.g={}``) clears the section instead: the way to drop a recipe's keys."""
    parts = key.split(".")
    node = tree
    for i, p in enumerate(parts[:-1]):
        here = ".".join(parts[:i + 1])
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise ConfigError(f"--set {key}: {here} is not an index of a list of {len(node)}")
            node = node[int(p)]
        else:
            if p not in node or node[p] is None:
                node[p] = {}
            elif not isinstance(node[p], (dict, list)):
                raise ConfigError(f"--set {key}: {here} is a value, not a section")
            node = node[p]
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"--set {key}: index {last} is out of range")
        node[int(last)] = value
    elif value and isinstance(value, dict) and isinstance(node.get(last), dict):
        merge(node[last], value)
    else:
        node[last] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.steps=100'`` -> ``('train.steps', 100)``; values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.steps=1000")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    if key in PATH_KEYS and raw.strip() not in ("", "null", "Null", "NULL"):
        return key, raw  # a path as written: ~ (YAML's null) is the home folder, 2024 a folder of that name
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


#: Keys whose ``--set`` value is a path, taken as the text written (``null`` or nothing: the default):
#: YAML would read ``~`` and ``#x`` as null and ``2024`` as a number, none of which is a folder.
PATH_KEYS = frozenset({"data.root"})


def apply_overrides(cfg: Config, overrides: List[str]) -> Config:
    return _with_values(cfg, [(*parse_override(text), text) for text in overrides])


def _with_values(cfg: Config, items) -> Config:
    """``cfg`` with each ``(dotted key, value, how it was written)`` set, then checked."""
    tree = cfg.to_dict()
    for key, value, text in items:
        _check_override_keys(key, value, text)
        set_dotted(tree, key, value)
    return validate(from_dict(Config, tree))


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, which refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _refuse_duplicates(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:  # an unhashable key: construct_mapping says so
            break
        if first is not key_node:
            raise _Duplicate(key, key_node.start_mark.line + 1, first.start_mark.line + 1)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


class _Duplicate(Exception):
    def __init__(self, key, line: int, first: int):
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                        lambda loader, node: dict(_refuse_duplicates(loader, node, deep=True)))


def _yaml_error(path: Path, e: yaml.YAMLError) -> str:
    """PyYAML's problem and where (line and column from 1), in one line."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context:
        problem += f" ({context}" + (f" at line {cmark.line + 1}, column {cmark.column + 1}" if cmark else "") + ")"
    return f"{path}: not valid YAML at {where}{problem}".replace("\n", " ")


def read_yaml(path: Path):
    """The YAML file ``path`` as plain data; one ConfigError line for a file that cannot be read, is not
    YAML (with PyYAML's line, column and problem), or gives a key twice in one mapping."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e.__class__.__name__}: {getattr(e, 'strerror', None) or e})") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except _Duplicate as d:
        raise ConfigError(f"{path}: line {d.line}: key {d.key!r} is given twice in one mapping (first on line "
                          f"{d.first}); YAML would keep only the last one and drop the first's settings: "
                          "write the key once, with all its settings") from None
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, e)) from None


def config_path(source: str | Path) -> Path:
    """The YAML file a recipe name or path stands for; one line for a folder, a file that is not YAML
    (its suffix), a missing file, or an unknown recipe name (with the closest ones)."""
    from .recipes import RECIPE_DIR, recipe_path

    path = Path(source).expanduser()
    text = str(source)
    if path.suffix.lower() in (".yaml", ".yml"):
        if path.is_file():
            return path
        if path.is_dir():
            raise ConfigError(f"{source}: a folder, not a YAML file; give a .yaml file")
        raise ConfigError(f"{source}: no such file (looked in {Path.cwd()})" if not path.is_absolute()
                          else f"{source}: no such file")
    if "/" not in text and "\\" not in text and (RECIPE_DIR / f"{text}.yaml").is_file():
        return RECIPE_DIR / f"{text}.yaml"  # a shipped recipe's name
    if path.is_dir():
        if (path / "config.yaml").is_file():
            raise ConfigError(f"{source}: a run folder, not a recipe; train its config again with {path / 'config.yaml'}, "
                              f"or continue the run with --resume {source}")
        raise ConfigError(f"{source}: a folder, not a recipe or YAML file; give a recipe name or a .yaml file")
    if path.is_file():
        raise ConfigError(f"{source}: not a .yaml or .yml file (a config file's name ends in .yaml); "
                          f"rename it to {path.with_name(path.name + '.yaml')}")
    return recipe_path(text)


def _in_file(e: ConfigError, path: Path) -> ConfigError:
    """``e`` with the file's name in front."""
    if str(e).startswith(str(path)):
        return e
    return (type(e) if type(e) in (ConfigError, UnknownName) else ConfigError)(f"{path}: {e}")


def load_config(source: str | Path | dict, overrides: Optional[List[str]] = None) -> Config:
    """Load a recipe by name, a YAML file path or a dict, then apply ``key=value`` overrides."""
    if isinstance(source, dict):
        return _load(source, overrides or [])
    path = config_path(source)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: empty (no settings, only blank lines or comments); write a config in it, e.g. "
                          "a copy of a run's config.yaml (docs/usage.md#your-own-recipe)")
    overrides = overrides or []
    try:
        cfg = from_dict(Config, data)  # types and keys checked; the values once the overrides are in
        if not overrides:
            return validate(cfg)
    except ConfigError as e:
        raise _in_file(e, path) from None
    try:
        return apply_overrides(cfg, overrides)
    except ConfigError as e:
        if not str(e).startswith("--set"):
            try:
                validate(cfg)
            except ConfigError as alone:
                if str(alone) == str(e):  # the file's own value, not an override's
                    raise _in_file(e, path) from None
        raise


def _load(data, overrides: List[str]) -> Config:
    cfg = from_dict(Config, data)  # types and keys checked; the values once the overrides are in
    return apply_overrides(cfg, overrides) if overrides else validate(cfg)


#: Checks of config sections by the package that owns the names they refer to (datasets,
#: networks, losses, objectives, metrics); each registers itself with :func:`register_check`
#: when imported, so this module imports none of them.
CHECKS: List[Callable[["Config"], None]] = []

#: The packages whose imports register the checks of :data:`CHECKS` (imported by :func:`load_config`).
OWNERS = ("gankit.data", "gankit.nets", "gankit.losses", "gankit.objectives", "gankit.train", "gankit.metrics")


def register_check(fn: Callable[["Config"], None]) -> Callable[["Config"], None]:
    """Register ``fn(cfg)``, which raises :class:`ConfigError` naming the key it rejects."""
    CHECKS.append(fn)
    return fn


def check(key: str, ok: bool, allowed: str) -> None:
    """Raise one ConfigError line naming ``key`` and what is allowed unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: invalid value; allowed: {allowed}")


def check_name(key: str, name: str, registry) -> None:
    """Refuse a name ``registry`` lacks, suggesting the closest one before listing them all."""
    if name not in registry:
        raise ConfigError(f"{key}: invalid value {name!r};{did_you_mean(name, registry.names())} "
                          f"allowed: {', '.join(registry.names())}")


def import_plugins(plugins) -> None:
    """Import the modules a config's ``plugins`` names, so that what they register (a loss, a network
    family, an objective, ...) exists before the config is checked or a run is loaded. Module names
    only, found on Python's path as it is (PYTHONPATH, installed packages; ``python -m gankit`` adds the
    current folder): never a file from a run folder being loaded."""
    import importlib
    import re
    import sys

    for name in plugins:
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            raise ConfigError(f"plugins: {name!r} is not a module name (e.g. myproject.losses; not a file path)")
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"plugins: cannot import {name!r} ({e}); make it importable: PYTHONPATH=ITS_FOLDER, "
                              "pip install -e it, or run python -m gankit from its folder") from None


def validate(cfg: Config) -> Config:
    """Value checks that types alone cannot express, then every registered section check."""
    import importlib

    for owner in OWNERS:
        importlib.import_module(owner)
    import_plugins(cfg.plugins)
    t = cfg.train
    check("train.precision", t.precision in ("fp32", "bf16", "fp16", "auto"), "fp32, bf16, fp16, auto")
    check("train.cuda_graphs", t.cuda_graphs in ("auto", "on", "off", True, False), "auto, on, off")
    check("train.steps", t.steps is None or t.steps >= 0, "an integer >= 0 or null")
    check("train.epochs", t.epochs is None or t.epochs > 0, "a number > 0 or null")
    check("train.minutes", t.minutes is None or t.minutes > 0, "a number > 0 or null")
    check("train", t.steps is not None or t.epochs is not None or t.minutes is not None,
          "set at least one of train.steps, train.epochs, train.minutes")
    check("train.batch_size", t.batch_size >= 1, "an integer >= 1")
    check("train.d_steps", t.d_steps >= 1, "an integer >= 1")
    check("train.lr_decay_start", 0.0 <= t.lr_decay_start < 1.0, "a number in [0, 1)")
    check("train.lr_final", 0.0 <= t.lr_final <= 1.0, "a number in [0, 1]")
    check("train.ema", t.ema is None or 0.0 < t.ema < 1.0, "a number in (0, 1) or null")
    check("train.ema_rampup", t.ema_rampup is None or t.ema_rampup > 0, "a number > 0 or null")
    check("train.log_every", t.log_every >= 1, "an integer >= 1")
    check("train.sample_every", t.sample_every is None or t.sample_every >= 1, "an integer >= 1 or null")
    check("train.checkpoint_every", t.checkpoint_every >= 1, "an integer >= 1")
    check("train.snapshot_every", t.snapshot_every is None or t.snapshot_every >= 1, "an integer >= 1 or null")
    check("train.snapshot_keep", t.snapshot_keep >= 2, "an integer >= 2")
    check("train.checkpoint_minutes", t.checkpoint_minutes is None or t.checkpoint_minutes > 0,
          "a number of minutes > 0 or null")
    check("train.dist_timeout_s", t.dist_timeout_s > 0, "a number of seconds > 0")
    check("train.device", t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
          "auto, cpu, cuda or cuda:N")
    optims = {"g_optim": t.g_optim, "d_optim": t.d_optim, **{f"optim.{k}": v for k, v in t.optim.items()}}
    for key, o in optims.items():
        check(f"train.{key}.name", o.name in ("adam", "rmsprop", "sgd"), "adam, rmsprop, sgd")
        check(f"train.{key}.lr", math.isfinite(o.lr) and o.lr > 0, "a finite number > 0")
        check(f"train.{key}.weight_decay", math.isfinite(o.weight_decay) and o.weight_decay >= 0,
              "a finite number >= 0")
        check(f"train.{key}.betas", all(0.0 <= b < 1.0 for b in o.betas), "two numbers in [0, 1)")
        check(f"train.{key}.momentum", math.isfinite(o.momentum) and 0.0 <= o.momentum < 1.0, "a number in [0, 1)")
        # A typed config refuses what would do nothing: sgd and rmsprop have no betas, Adam no momentum.
        if o.name != "adam" and tuple(o.betas) != OptimConfig.betas:
            raise ConfigError(f"train.{key}.betas: {list(o.betas)} does nothing with {o.name} (Adam's setting); "
                              f"remove it (train.{key}.momentum sets {o.name}'s momentum)")
        if o.name == "adam" and o.momentum != 0.0:
            raise ConfigError(f"train.{key}.momentum: {o.momentum:g} does nothing with adam (sgd's and rmsprop's "
                              f"setting); remove it, or set train.{key}.betas (Adam's β1 is its momentum)")
    check("model.z_dim", cfg.model.z_dim >= 1, "an integer >= 1")
    r = cfg.data.resolution
    check("data.resolution", r is None or min((r, r) if isinstance(r, int) else r) >= 4,
          "an integer >= 4 (square), a list [H, W] of integers >= 4, or null")
    check("data.channels", cfg.data.channels in (None, 1, 3), "1, 3 or null")
    check("data.size", cfg.data.size >= 1, "an integer >= 1")
    check("data.limit", cfg.data.limit is None or cfg.data.limit >= 1, "an integer >= 1 or null")
    check("data.subset_fraction", cfg.data.subset_fraction is None or 0.0 < cfg.data.subset_fraction <= 1.0,
          "a number in (0, 1] (the fraction of the train split to keep) or null (all of it)")
    check("data.direction", cfg.data.direction in ("AtoB", "BtoA"), "AtoB, BtoA")
    check("data.exclude_classes", all(isinstance(k, str) or k >= 0 for k in cfg.data.exclude_classes)
          and len(set(cfg.data.exclude_classes)) == len(cfg.data.exclude_classes),
          "distinct class indices >= 0 or class names (a folder's sub-folders)")
    h = cfg.health
    for key in ("window", "patience"):
        check(f"health.{key}", getattr(h, key) >= 1, "an integer >= 1")
    for key in ("warmup", "samples", "max_rollbacks"):
        check(f"health.{key}", getattr(h, key) >= 0, "an integer >= 0")
    for key in ("collapse_diversity", "collapse_entropy", "vanishing_ratio", "swing", "chance_tol", "min_delta"):
        check(f"health.{key}", 0.0 <= getattr(h, key) <= 1.0, "a number in [0, 1]")
    for key in ("vanishing_rel", "instance_noise"):
        check(f"health.{key}", getattr(h, key) >= 0, "a number >= 0")
    check("health.spike_z", h.spike_z > 0, "a number > 0")
    check("health.oscillation", h.oscillation > 0, "a number > 0")
    check("health.explode_factor", h.explode_factor > 1, "a number > 1")
    check("health.explode_abs", h.explode_abs > 0, "a number > 0")
    check("health.lr_factor", 0.0 < h.lr_factor < 1.0, "a number in (0, 1)")
    check("health.on_converged", h.on_converged in ("stop", "warn"), "stop, warn")
    check("health.on_diverged", h.on_diverged in ("rollback", "stop", "warn"), "rollback, stop, warn")
    check("health.on_vanishing", h.on_vanishing in ("warn", "non-saturating", "instance-noise"),
          "warn, non-saturating, instance-noise")
    e = cfg.eval
    check("eval.every", e.every is None or e.every >= 1, "an integer >= 1 or null")
    check("eval.n", e.n >= 10, "an integer >= 10")
    check("eval.split", e.split in ("train", "test"), "train, test")
    for fn in CHECKS:
        fn(cfg)
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    from .utils import atomic_write_text

    atomic_write_text(Path(path), cfg.to_yaml())
