"""Experiment configuration: TOML -> validated dataclasses (one run, or a sweep of runs).

A config has a top-level ``seed`` and the sections ``[problem]``, ``[partition]``, ``[algorithm]``
and ``[run]``; an optional array ``[[sweep]]`` turns it into several runs (see :func:`expand`).
Unknown keys, wrong types and out-of-range values raise :class:`DistclipError` with one line that
names the key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .algorithms import ALGORITHMS
from .clipping import KINDS as CLIP_KINDS
from .compressors import KINDS as COMPRESSORS
from .data.cifar10 import MISSING_PATH as CIFAR10_MISSING_PATH
from .data.partition import SCHEMES
from .errors import DistclipError
from .problems.awd_lstm import AWD_SIZES, PRESETS
from .problems.resnet import DEEP_MODELS

Number = float | int


@dataclass
class ProblemConfig:
    kind: str = field(default="logreg", metadata={"help": "logreg | quadratic | mlp | cnn | lstm | resnet20 | "
                                                          "resnet32 | resnet56 | vgg11 | quartic"})
    dataset: str | None = field(default=None, metadata={"help": "bundled LIBSVM name (see `distclip list`)"})
    path: str | None = field(default=None, metadata={"help": "svmlight file (plain or .gz) instead of dataset"})
    n_features: int | None = field(default=None, metadata={"help": "feature count (default: from the file)"})
    lam: float = field(default=0.1, metadata={"key": "lambda", "help": "weight of Σ x_k²/(1+x_k²)"})
    features: str = field(default="auto", metadata={"help": "auto | dense | sparse feature storage"})
    centres: list[list[float]] | list[float] | None = field(
        default=None, metadata={"help": "quadratic: centres a_i, one per client (numbers for d = 1)"}
    )
    curvatures: list[float] | None = field(default=None, metadata={"help": "quadratic: c_i > 0 (default 1)"})
    x0: float | list[float] = field(default=0.0, metadata={"help": "start x^0: a number (all coordinates) or a list"})
    hidden: list[int] = field(default_factory=lambda: [64],
                              metadata={"help": "mlp: hidden widths; lstm: one width per layer"})
    bptt: int = field(default=35, metadata={"help": "lstm: tokens per training window"})
    rotate: bool = field(default=False, metadata={"help": "lstm: client i reads shard (i + epoch) mod N (CELGC code)"})
    channels: list[int] = field(default_factory=lambda: [8, 16], metadata={"help": "cnn: channels of its 2 convs"})
    test_fraction: float = field(default=0.2, metadata={"help": "image kinds: share of rows held out for test "
                                                                       "metrics (cifar10 has its own split)"})
    width: int | None = field(default=None, metadata={"help": "resnet: first-stage channels (16); vgg11: first "
                                                              "conv's channels (64)"})
    groups: int = field(default=2, metadata={"help": "resnet/vgg11: GroupNorm groups per layer"})
    augment: bool = field(default=False, metadata={"help": "cifar10: random 4-pad crops and flips in training"})
    eval_rows: int = field(default=0, metadata={"help": "image kinds: log f, ∇f and accuracies on this many "
                                                        "train (and test) rows (0: all)"})
    het: float = field(default=0.0, metadata={"key": "H", "help": "quartic: heterogeneity H of f_i = x⁴ − 3x³ − "
                                              "H·h_i·x² + x"})
    sigma: float = field(default=0.0, metadata={"help": "quartic: gradient noise Unif(−σ, σ) per sample"})
    model: str = field(default="small", metadata={"help": "lstm: small (equal widths, no regularisation) | awd "
                                                           "(AWD-LSTM: hidden [1150, 1150, 400], dropouts, carry)"})
    dropout: float | None = field(default=None, metadata={"help": "lstm: locked dropout on the output (awd 0.4)"})
    dropouth: float | None = field(default=None, metadata={"help": "lstm: locked dropout between layers (awd 0.25)"})
    dropouti: float | None = field(default=None, metadata={"help": "lstm: locked dropout on the input (awd 0.4)"})
    dropoute: float | None = field(default=None, metadata={"help": "lstm: embedding dropout, whole words (awd 0.1)"})
    wdrop: float | None = field(default=None, metadata={"help": "lstm: DropConnect on hidden-to-hidden (awd 0.5)"})
    ar: float | None = field(default=None, metadata={"help": "lstm: activation regularisation α (awd 2)"})
    tar: float | None = field(default=None, metadata={"help": "lstm: temporal activation regularisation β (awd 1)"})
    carry: bool | None = field(default=None, metadata={"help": "lstm: carry the hidden state across a client's "
                                                                "consecutive windows (awd true)"})


#: problem kinds that train a network on images (problem.dataset: digits | mnist | cifar10)
IMAGE_KINDS = ("mlp", "cnn", *DEEP_MODELS)
#: every problem kind and what it is (``distclip list``)
PROBLEM_KINDS: dict[str, str] = {
    "logreg": "logistic regression + λ Σ x²/(1+x²) on LIBSVM data (dataset or path)",
    "quadratic": "f_i(x) = ½ c_i ‖x − a_i‖² (centres, curvatures)",
    "quartic": "f_i(x) = x⁴ − 3x³ − H·h_i·x² + x + Unif(−σ, σ) gradient noise (EPISODE's synthetic)",
    "mlp": "MLP classifier (hidden) on digits, mnist or cifar10",
    "cnn": "2-conv CNN classifier (channels) on digits, mnist or cifar10",
    **{k: f"ResNet-{k[6:]} (option-A shortcuts, per-client GroupNorm) on cifar10 (or digits/mnist)"
       for k in DEEP_MODELS if k.startswith("resnet")},
    "vgg11": "VGG-11 (per-client GroupNorm) on cifar10 (or digits/mnist)",
    "lstm": "word-level LSTM language model on ptb (bundled) or wikitext2 (path); model small or awd",
}


#: problem keys that only some kinds use (the others apply to every kind)
_PROBLEM_KEYS: dict[str, set[str]] = {
    "dataset": {"logreg", "lstm", *IMAGE_KINDS}, "path": {"logreg", "lstm", *IMAGE_KINDS}, "n_features": {"logreg"},
    "lam": {"logreg"}, "features": {"logreg"}, "centres": {"quadratic"}, "curvatures": {"quadratic"},
    "hidden": {"mlp", "lstm"}, "channels": {"cnn"}, "test_fraction": set(IMAGE_KINDS), "bptt": {"lstm"},
    "rotate": {"lstm"}, "width": set(DEEP_MODELS), "groups": set(DEEP_MODELS), "augment": set(IMAGE_KINDS),
    "eval_rows": set(IMAGE_KINDS),
    "het": {"quartic"}, "sigma": {"quartic"},
    "model": {"lstm"}, "dropout": {"lstm"}, "dropouth": {"lstm"}, "dropouti": {"lstm"}, "dropoute": {"lstm"},
    "wdrop": {"lstm"}, "ar": {"lstm"}, "tar": {"lstm"}, "carry": {"lstm"},
}


@dataclass
class PartitionConfig:
    clients: int = field(default=20, metadata={"help": "number of clients N"})
    scheme: str = field(default="sorted", metadata={"help": "contiguous | sorted | iid | similarity | dirichlet"})
    similarity: float | None = field(default=None, metadata={"help": "similarity scheme: share s in the common pool"})
    alpha: float | None = field(default=None, metadata={"help": "dirichlet scheme: concentration α > 0"})


@dataclass
class AlgorithmConfig:
    name: str = field(default="clip21", metadata={"help": "see `distclip list`"})
    lr: float | str | None = field(default=None, metadata={"help": "step size: a number or 'c/L' (e.g. '1/L')"})
    tau: float | list[float] | None = field(
        default=None, metadata={"help": "clipping threshold τ (inf allowed) or one τ_i per client"}
    )
    gamma: float | list[float] | None = field(
        default=None, metadata={"help": "celgc: maximal step length γ (threshold γ/lr); or give tau"}
    )
    clip: str = field(default="norm", metadata={"help": "norm | soft | coordinate clipping operator"})
    clip_at: str | None = field(default=None, metadata={"help": "client | server: where the clip sits"})
    local_steps: int = field(default=1, metadata={"help": "communication interval I (celgc, local-sgd)"})
    option: str = field(default="local", metadata={"help": "celgc norm: local | max | global_average"})
    compressor: str = field(default="top-k", metadata={"help": "ef21: top-k | identity"})
    k: int | None = field(default=None, metadata={"help": "ef21 top-k: entries kept"})
    init: str | None = field(default=None, metadata={"help": "memory init (clip21: clip_grad|grad|zero; ef21: "
                                                      "compressed_grad|grad|zero)"})
    momentum: float = field(default=0.0, metadata={"help": "torch.optim.SGD momentum μ"})
    dampening: float = field(default=0.0, metadata={"help": "torch.optim.SGD dampening"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum"})
    weight_decay: float = field(default=0.0, metadata={"help": "torch.optim.SGD weight decay"})
    baseline: bool = field(default=False, metadata={"help": "celgc: average the gradient at communication steps"})
    official: bool = field(default=False, metadata={"help": "clip-gd/naive: also average the replicas each step"})
    lr_schedule: str = field(default="constant", metadata={"help": "constant | milestones | cosine (lr and gamma "
                                                                    "scaled together)"})
    milestones: list[int] = field(default_factory=list, metadata={"help": "steps (or epochs, see milestone_unit) "
                                                                            "at which lr and gamma decay"})
    milestone_unit: str = field(default="steps", metadata={"help": "steps | epochs: the unit of milestones"})
    decay: float = field(default=0.1, metadata={"help": "factor applied at each milestone"})
    resample_batch: int | None = field(default=None, metadata={"help": "episode: minibatch of the resampled "
                                       "gradient G_r^i (default batch_size·local_steps; 0 = full gradient)"})
    comparison: str = field(default=">", metadata={"help": "episode: clip a round when ‖G_r‖ > γ/lr, or '>='"})
    beta1: float = field(default=0.1, metadata={"help": "clip21-sgd2m: client momentum β1 in (0, 1]"})
    beta2: float = field(default=1.0, metadata={"help": "clip21-sgd2m: error-feedback step β2 in (0, 1]"})
    noise_multiplier: float = field(default=0.0, metadata={"help": "DP noise z: std z·tau per client message "
                                                                   "(local DP), z·C/N on dp-fedavg's average"})
    target_epsilon: float | None = field(default=None, metadata={"help": "calibrate noise_multiplier so that ε "
                                                                          "after run.steps is this"})
    delta: float = field(default=1e-5, metadata={"help": "DP δ at which ε is reported"})
    accountant: str = field(default="rdp", metadata={"help": "rdp | prv (Opacus accountants)"})
    secure_noise: bool = field(default=False, metadata={"help": "draw DP noise from OS entropy (not reproducible)"})
    adaptive_clip: str = field(default="off", metadata={"help": "dp-fedavg: off | geometric | arithmetic "
                                                                 "(tau is then C0)"})
    quantile: float = field(default=0.5, metadata={"help": "dp-fedavg adaptive: target unclipped quantile q"})
    clip_lr: float = field(default=0.2, metadata={"help": "dp-fedavg adaptive: learning rate η_C of C"})
    count_noise: float | None = field(default=None, metadata={"help": "dp-fedavg adaptive: std σ_b of the count "
                                                                       "noise (default N/20 when private)"})
    client_rate: float = field(default=1.0, metadata={"help": "dp-fedavg: each client takes part in a round with "
                                                               "this probability (Poisson sampling)"})


@dataclass
class RunConfig:
    steps: int = field(default=1000, metadata={"help": "server steps K"})
    batch_size: int = field(default=0, metadata={"help": "minibatch per client; 0 = full gradients"})
    log_every: int = field(default=1, metadata={"help": "log every this many steps (step 0 and the last always)"})
    epochs: float = field(default=0.0, metadata={"help": "run length in epochs instead of run.steps; an epoch is "
                                                         "floor(rows per client / batch_size) steps (1 step with "
                                                         "full gradients)"})
    log_every_epochs: float = field(default=0.0, metadata={"help": "log (evaluate the averaged model) every this "
                                                                   "many epochs instead of every run.log_every steps"})
    dtype: str = field(default="float64", metadata={"help": "float64 | float32"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda | cuda:N"})
    name: str | None = field(default=None, metadata={"help": "run name (default: algorithm and problem)"})
    engine: str = field(default="auto", metadata={"help": "simulator | distributed | auto (torchrun)"})
    backend: str = field(default="auto", metadata={"help": "auto (nccl on cuda) | gloo | nccl"})
    timeout_s: float = field(default=300.0, metadata={"help": "collective timeout: a hung worker fails after this"})
    checkpoint_every: int = field(default=0, metadata={"help": "write checkpoint.pt every N steps (0: never)"})


@dataclass
class Config:
    seed: int = 0
    problem: ProblemConfig = field(default_factory=ProblemConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    run: RunConfig = field(default_factory=RunConfig)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    given: frozenset[str] = field(default_factory=frozenset, repr=False)  # "section.key" set explicitly
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the document it was built from


SECTIONS: dict[str, type] = {
    "problem": ProblemConfig, "partition": PartitionConfig, "algorithm": AlgorithmConfig, "run": RunConfig,
}


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_matches(v, inner) for v in value)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def _section(cls: type, raw: dict[str, Any], name: str) -> tuple[Any, set[str]]:
    hints = typing.get_type_hints(cls)
    fields = {_key(f): f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise DistclipError(f"unknown key {name}.{key}; allowed keys: {', '.join(fields)}")
        f = fields[key]
        if not _matches(value, hints[f.name]):
            raise DistclipError(
                f"{name}.{key} = {value!r} has the wrong type; expected {_type_name(hints[f.name])}"
            )
        values[f.name] = float(value) if hints[f.name] is float else value
    return cls(**values), {f"{name}.{k}" for k in raw}


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a parsed TOML document."""
    original = copy.deepcopy(raw)
    raw = dict(raw)
    given: set[str] = set()
    kwargs: dict[str, Any] = {}
    if "seed" in raw:
        seed = raw.pop("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise DistclipError(f"seed = {seed!r} must be an integer >= 0")
        kwargs["seed"] = seed
        given.add("seed")
    sweep = raw.pop("sweep", [])
    if not isinstance(sweep, list) or not all(isinstance(s, dict) for s in sweep):
        raise DistclipError("sweep must be an array of tables: write [[sweep]] entries with set = {...} / grid = {...}")
    for name, value in raw.items():
        if name not in SECTIONS:
            raise DistclipError(f"unknown section or key {name!r}; allowed: seed, {', '.join(SECTIONS)}, sweep")
        if not isinstance(value, dict):
            raise DistclipError(f"{name} must be a table: write [{name}] and its keys below it")
        kwargs[name], keys = _section(SECTIONS[name], value, name)
        given |= keys
    cfg = Config(**kwargs, sweep=sweep, given=frozenset(given), raw=original)
    for entry in sweep:
        _check_sweep_entry(entry)
    if not sweep:
        validate(cfg)
    return cfg


def load(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a TOML file, apply ``section.key=value`` overrides, validate."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DistclipError(f"config file {p} not found; give the path of a TOML config") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DistclipError(f"cannot read config file {p}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise DistclipError(f"config file {p} is not valid TOML: {e}") from None
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise DistclipError(f"--set {item!r} must look like section.key=value")
        set_key(raw, key.strip(), parse_value(text.strip()))
    return from_dict(raw)


def parse_value(text: str) -> Any:
    """A TOML value (``0.1``, ``inf``, ``[1, 2]``, ``true``, ``"x"``), or the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_key(raw: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.rpartition(".")
    if not section:
        raw[key] = value
        return
    raw.setdefault(section, {})[key] = value


def expand(cfg: Config) -> list[tuple[str, Config]]:
    """The runs of a sweep: for each ``[[sweep]]`` entry, its ``set`` overrides times its ``grid``.

    ``grid`` maps keys to lists and yields their cartesian product. Each run is validated on its own
    and labelled by the keys it sets (or ``label``, formatted with those keys' values).
    """
    runs = []
    for entry in cfg.sweep:
        grid = entry.get("grid", {})
        for combo in itertools.product(*grid.values()):
            values = dict(entry.get("set", {}))
            values.update(zip(grid, combo, strict=True))
            doc = copy.deepcopy({k: v for k, v in cfg.raw.items() if k != "sweep"})
            for key, value in values.items():
                set_key(doc, key, value)
            label = entry.get("label") or "-".join(f"{_short(v)}" for v in values.values())
            label = label.format(**{k.rpartition(".")[2]: v for k, v in values.items()})
            try:
                runs.append((_slug(label), from_dict(doc)))
            except DistclipError as e:
                raise DistclipError(f"sweep run {label!r}: {e}") from None
    labels = [r[0] for r in runs]
    if len(set(labels)) != len(labels):
        raise DistclipError("sweep runs need distinct labels; give each [[sweep]] entry a label with {key} fields")
    return runs


def _short(v: Any) -> str:
    return str(v).replace(" ", "")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "run"


def _check_sweep_entry(entry: dict[str, Any]) -> None:
    unknown = set(entry) - {"set", "grid", "label"}
    if unknown:
        raise DistclipError(f"unknown key sweep.{sorted(unknown)[0]}; a [[sweep]] entry has set, grid, label")
    if not isinstance(entry.get("set", {}), dict):
        raise DistclipError('sweep.set must be a table such as { "algorithm.name" = "clip21" }')
    grid = entry.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise DistclipError('sweep.grid must map keys to non-empty lists, e.g. { "algorithm.tau" = [1.0, 0.1] }')


def _lstm_preset(cfg: Config) -> None:
    """Fill the lstm keys left unset from the ``problem.model`` preset, then check their ranges."""
    p = cfg.problem
    _choice("problem.model", p.model, tuple(PRESETS))
    if p.model == "awd" and "problem.hidden" not in cfg.given:
        p.hidden = list(AWD_SIZES)
    if not p.hidden or min(p.hidden) < 1:
        raise DistclipError("lstm: problem.hidden lists one width >= 1 per layer (awd: the last is the embedding size)")
    preset = PRESETS[p.model]
    for name in ("dropout", "dropouth", "dropouti", "dropoute", "wdrop", "ar", "tar"):
        if getattr(p, name) is None:
            setattr(p, name, getattr(preset, name))
        value, top = getattr(p, name), 1.0 if name not in ("ar", "tar") else math.inf
        if not 0 <= value < top:
            raise DistclipError(f"problem.{name} = {value} must be in [0, {top:g})")
    if p.carry is None:
        p.carry = p.model == "awd"


# -- value checks ----------------------------------------------------------------------------------
def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise DistclipError(f"{key} = {value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _positive(key: str, value: float | list[float], allow_inf: bool = True) -> None:
    for v in value if isinstance(value, list) else [value]:
        if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
            raise DistclipError(f"{key} = {value!r} must be > 0" + ("" if allow_inf else " and finite"))


def lr_factor(lr: float | str) -> tuple[float, bool]:
    """(value, relative): ``0.5`` -> (0.5, False); ``"2/L"`` -> (2.0, True) meaning 2/L."""
    if isinstance(lr, str):
        m = re.fullmatch(r"\s*([0-9.eE+-]*)\s*/\s*L\s*", lr)
        try:
            c = float(m.group(1)) if m and m.group(1) else (1.0 if m else None)
        except ValueError:
            c = None
        if c is None or not c > 0 or math.isinf(c):
            raise DistclipError(f"algorithm.lr = {lr!r} must be a number > 0 or 'c/L' with c > 0 (e.g. '1/L')")
        return c, True
    _positive("algorithm.lr", lr, allow_inf=False)
    return float(lr), False


def validate(cfg: Config) -> None:
    """Range and consistency checks that do not need the data (those live in the builders)."""
    p, part, a, r = cfg.problem, cfg.partition, cfg.algorithm, cfg.run
    _choice("problem.kind", p.kind, tuple(PROBLEM_KINDS))
    for f in dataclasses.fields(ProblemConfig):
        if f"problem.{_key(f)}" in cfg.given and p.kind not in _PROBLEM_KEYS.get(f.name, {p.kind}):
            raise DistclipError(
                f"problem.{_key(f)} does not apply to kind = '{p.kind}'; it applies to: "
                f"{', '.join(sorted(_PROBLEM_KEYS[f.name]))}"
            )
    _choice("problem.features", p.features, ("auto", "dense", "sparse"))
    if p.kind == "lstm":
        _choice("problem.dataset (for lstm)", p.dataset, ("ptb", "wikitext2"))
        _lstm_preset(cfg)
        if p.model == "small" and (not p.hidden or len(set(p.hidden)) != 1 or p.hidden[0] < 1):
            raise DistclipError("lstm: problem.hidden lists one equal width per layer, e.g. [64] or [400, 400, 400]")
        if p.bptt < 1:
            raise DistclipError(f"problem.bptt = {p.bptt} must be >= 1")
        if cfg.run.batch_size < 1:
            raise DistclipError("lstm trains on minibatches of windows; set run.batch_size >= 1")
    elif p.kind in IMAGE_KINDS:
        _choice(f"problem.dataset (for {p.kind})", p.dataset, ("digits", "mnist", "cifar10"))
        if not 0 <= p.test_fraction < 1:
            raise DistclipError(f"problem.test_fraction = {p.test_fraction} must be in [0, 1)")
        widths = p.hidden if p.kind == "mlp" else p.channels
        if any(w < 1 for w in widths) or (p.kind == "cnn" and len(widths) != 2):
            raise DistclipError("problem.hidden must list widths >= 1; problem.channels two channel counts >= 1")
        _validate_images(cfg)
    elif p.kind == "logreg":
        if (p.dataset is None) == (p.path is None):
            raise DistclipError("logreg needs exactly one of problem.dataset (bundled name) or problem.path (file)")
        if p.lam < 0 or math.isnan(p.lam) or math.isinf(p.lam):
            raise DistclipError(f"problem.lambda = {p.lam} must be a finite number >= 0")
    elif p.kind == "quartic":
        if not (math.isfinite(p.het) and math.isfinite(p.sigma) and p.sigma >= 0):
            raise DistclipError(f"quartic: problem.H = {p.het} must be finite and problem.sigma = {p.sigma} >= 0")
    else:
        if not p.centres:
            raise DistclipError("quadratic needs problem.centres, one centre per client, e.g. [3.0, -3.0]")
        dims = {len(c) if isinstance(c, list) else 1 for c in p.centres}
        if len(dims) != 1 or 0 in dims:
            raise DistclipError("problem.centres must all have the same non-zero length (the dimension d)")
        if p.curvatures is not None:
            if len(p.curvatures) != len(p.centres):
                raise DistclipError(
                    f"problem.curvatures has {len(p.curvatures)} values for {len(p.centres)} centres; give one each"
                )
            _positive("problem.curvatures", p.curvatures, allow_inf=False)
        if "partition.clients" in cfg.given and part.clients != len(p.centres):
            raise DistclipError(
                f"partition.clients = {part.clients} but problem.centres has {len(p.centres)} clients; "
                "remove partition.clients or make them agree"
            )
        part.clients = len(p.centres)
    if part.clients < 1:
        raise DistclipError(f"partition.clients = {part.clients} must be >= 1")
    _choice("partition.scheme", part.scheme, SCHEMES)
    for key, scheme in (("similarity", "similarity"), ("alpha", "dirichlet")):
        value = getattr(part, key)
        if (value is not None) != (part.scheme == scheme):
            raise DistclipError(f"partition.{key} goes with scheme = '{scheme}' (and that scheme needs it)")
    if part.similarity is not None and not 0 <= part.similarity <= 1:
        raise DistclipError(f"partition.similarity = {part.similarity} must be in [0, 1] (1 - H in EPISODE's terms)")
    if part.alpha is not None and not (part.alpha > 0 and math.isfinite(part.alpha)):
        raise DistclipError(f"partition.alpha = {part.alpha} must be a finite number > 0")
    _choice("algorithm.name", a.name, tuple(ALGORITHMS))
    _validate_algorithm(cfg)
    if r.steps < 0:
        raise DistclipError(f"run.steps = {r.steps} must be >= 0")
    if r.batch_size < 0:
        raise DistclipError(f"run.batch_size = {r.batch_size} must be >= 0 (0 = full gradients)")
    if r.log_every < 1:
        raise DistclipError(f"run.log_every = {r.log_every} must be >= 1")
    for key, steps_key in (("epochs", "steps"), ("log_every_epochs", "log_every")):
        value = getattr(r, key)
        if not (value >= 0 and math.isfinite(value)):
            raise DistclipError(f"run.{key} = {value} must be a finite number >= 0 (0: use run.{steps_key})")
        if value > 0 and f"run.{steps_key}" in cfg.given:
            raise DistclipError(f"run.{key} and run.{steps_key} both given; keep one of them")
    _choice("run.dtype", r.dtype, ("float64", "float32"))
    _choice("run.engine", r.engine, ("auto", "simulator", "distributed"))
    _choice("run.backend", r.backend, ("auto", "gloo", "nccl"))
    if not r.timeout_s > 0:
        raise DistclipError(f"run.timeout_s = {r.timeout_s} must be > 0")
    if r.checkpoint_every < 0:
        raise DistclipError(f"run.checkpoint_every = {r.checkpoint_every} must be >= 0 (0: no checkpoints)")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", r.device):
        raise DistclipError(f"run.device = {r.device!r} is not allowed; use cpu, cuda or cuda:N")


def _validate_images(cfg: Config) -> None:
    p = cfg.problem
    if p.dataset == "cifar10":
        if p.path is None:
            raise DistclipError(CIFAR10_MISSING_PATH)
        if "problem.test_fraction" in cfg.given:
            raise DistclipError("cifar10 keeps its own 10,000-image test split; remove problem.test_fraction")
    elif p.augment:
        raise DistclipError(f"problem.augment (crops and flips) is for cifar10, not {p.dataset}; remove it")
    if (p.width is not None and p.width < 1) or p.groups < 1 or p.eval_rows < 0:
        raise DistclipError("problem.width and problem.groups must be >= 1, problem.eval_rows >= 0 (0: all rows)")


def _validate_algorithm(cfg: Config) -> None:
    a, spec = cfg.algorithm, ALGORITHMS[cfg.algorithm.name]
    generic = {"name", "lr", "lr_schedule", "milestones", "milestone_unit", "decay"} if spec.uses_lr else {"name"}
    for f in dataclasses.fields(AlgorithmConfig):
        if f.name in generic or f"algorithm.{f.name}" not in cfg.given or f.name in spec.params:
            continue
        users = sorted(n for n, s in ALGORITHMS.items() if f.name in s.params)
        raise DistclipError(
            f"algorithm.{f.name} does not apply to {a.name}; it applies to: {', '.join(users) or 'none'}"
        )
    _choice("algorithm.lr_schedule", a.lr_schedule, ("constant", "milestones", "cosine"))
    _choice("algorithm.milestone_unit", a.milestone_unit, ("steps", "epochs"))
    if (a.lr_schedule == "milestones") != bool(a.milestones):
        raise DistclipError("algorithm.milestones (steps) go with lr_schedule = 'milestones', which needs them")
    if any(m < 1 for m in a.milestones) or not 0 < a.decay <= 1:
        raise DistclipError("algorithm.milestones must be >= 1 and algorithm.decay in (0, 1]")
    if spec.uses_lr:
        if a.lr is None:
            raise DistclipError(f"{a.name} needs algorithm.lr (a number > 0, or 'c/L' such as '1/L')")
        lr_factor(a.lr)
    elif "algorithm.lr" in cfg.given:
        raise DistclipError(f"algorithm.lr does not apply to {a.name} (it has no step size); remove it")
    if "tau" in spec.params and a.name not in ("celgc", "episode"):
        if a.tau is None:
            raise DistclipError(f"{a.name} needs algorithm.tau, the clipping threshold (> 0; inf disables clipping)")
    if a.name in ("celgc", "episode") and (a.tau is None) == (a.gamma is None):
        raise DistclipError(
            f"{a.name} needs exactly one of algorithm.gamma (max step length) or algorithm.tau (gamma/lr)"
        )
    for key in ("tau", "gamma"):
        value = getattr(a, key)
        if value is None:
            continue
        _positive(f"algorithm.{key}", value)
        if isinstance(value, list) and len(value) != cfg.partition.clients:
            raise DistclipError(
                f"algorithm.{key} lists {len(value)} values for {cfg.partition.clients} clients; give one per client"
            )
    _choice("algorithm.clip", a.clip, CLIP_KINDS)
    if a.name == "celgc" and a.clip == "coordinate":
        raise DistclipError(
            "celgc scales its step by the raw gradient norm, which coordinate clipping lacks; use clip = norm or soft"
        )
    if a.clip_at is None:
        a.clip_at = spec.clip_at[0]
    _choice(f"algorithm.clip_at (for {a.name})", a.clip_at, spec.clip_at)
    if a.clip_at == "server" and isinstance(a.tau, list):
        raise DistclipError("per-client thresholds need clip_at = 'client'; the server clips one average")
    if a.local_steps < 1:
        raise DistclipError(f"algorithm.local_steps = {a.local_steps} must be >= 1")
    if spec.options:
        _choice("algorithm.option", a.option, spec.options)
    if a.baseline and a.option == "global_average":
        raise DistclipError(
            "celgc baseline with option global_average never clips (a quirk of the official code); use local or max"
        )
    if a.name == "ef21":
        _choice("algorithm.compressor", a.compressor, COMPRESSORS)
        if a.compressor == "top-k" and (a.k is None or a.k < 1):
            raise DistclipError("ef21 with compressor top-k needs algorithm.k >= 1 (entries kept per message)")
    if spec.inits:
        a.init = a.init or spec.inits[0]
        _choice(f"algorithm.init (for {a.name})", a.init, spec.inits)
    for key in ("momentum", "dampening"):
        v = getattr(a, key)
        if not 0 <= v < 1:
            raise DistclipError(f"algorithm.{key} = {v} must be in [0, 1)")
    if a.nesterov and (a.momentum == 0 or a.dampening != 0):
        raise DistclipError("algorithm.nesterov needs momentum > 0 and dampening = 0 (as torch.optim.SGD)")
    if a.weight_decay < 0:
        raise DistclipError(f"algorithm.weight_decay = {a.weight_decay} must be >= 0")
    if spec.batch == "full" and cfg.run.batch_size > 0:
        other = a.name.replace("gd", "sgd")
        raise DistclipError(f"{a.name} uses full gradients; set run.batch_size = 0 or use algorithm {other}")
    if spec.batch == "minibatch" and cfg.run.batch_size == 0:
        other = a.name.replace("sgd", "gd")
        raise DistclipError(f"{a.name} needs run.batch_size > 0; for full gradients use algorithm {other}")
    if spec.needs_targets and cfg.problem.kind != "quadratic":
        raise DistclipError(f"{a.name} averages the vectors a_i of problem kind 'quadratic' (its centres)")
    if a.name == "episode":
        _validate_episode(a)
    _validate_privacy(cfg)


def _validate_episode(a: AlgorithmConfig) -> None:
    _choice("algorithm.comparison", a.comparison, (">", ">="))
    if isinstance(a.tau, list) or isinstance(a.gamma, list):
        raise DistclipError("episode takes one algorithm.gamma (or tau) for all clients: a round's clip decision "
                            "is global")
    if a.resample_batch is not None and a.resample_batch < 0:
        raise DistclipError(f"algorithm.resample_batch = {a.resample_batch} must be >= 0 (0 = full gradient)")


def _validate_privacy(cfg: Config) -> None:
    """Clip21-SGD2M, DP noise and adaptive clipping keys (spec: algorithms.md §8, §9)."""
    a, spec = cfg.algorithm, ALGORITHMS[cfg.algorithm.name]
    for key in ("beta1", "beta2"):
        if not 0 < getattr(a, key) <= 1:
            raise DistclipError(f"algorithm.{key} = {getattr(a, key)} must be in (0, 1]")
    if not (0 <= a.noise_multiplier < math.inf):
        raise DistclipError(f"algorithm.noise_multiplier = {a.noise_multiplier} must be a finite number >= 0")
    if a.target_epsilon is not None:
        if a.noise_multiplier > 0:
            raise DistclipError("give algorithm.noise_multiplier or algorithm.target_epsilon (calibrates it), not both")
        _positive("algorithm.target_epsilon", a.target_epsilon, allow_inf=False)
        if cfg.run.steps == 0:
            raise DistclipError("algorithm.target_epsilon needs run.steps > 0 to calibrate the noise over")
    if not 0 < a.delta < 1:
        raise DistclipError(f"algorithm.delta = {a.delta} must be in (0, 1)")
    _choice("algorithm.accountant", a.accountant, ("rdp", "prv"))
    private = a.noise_multiplier > 0 or a.target_epsilon is not None
    if private and spec.privacy == "local":
        if a.clip_at != "client" or a.official:
            raise DistclipError(f"{a.name} with DP noise needs clip_at = 'client' and official = false: every "
                                "message must be clipped")
        if a.init == "grad":
            raise DistclipError(f"{a.name} with DP noise cannot use init = 'grad' (unclipped first message); "
                                "use clip_grad or zero")
        if a.clip == "coordinate":
            raise DistclipError("DP noise needs a norm-bounded message; use clip = 'norm' or 'soft'")
        if a.tau is None or any(math.isinf(t) for t in (a.tau if isinstance(a.tau, list) else [a.tau])):
            raise DistclipError(f"{a.name} with DP noise needs a finite algorithm.tau (the noise std is z·tau)")
    if spec.privacy != "central":
        return
    if isinstance(a.tau, list):
        raise DistclipError("dp-fedavg clips every update to one norm C: give algorithm.tau as one number")
    _choice("algorithm.adaptive_clip", a.adaptive_clip, ("off", "geometric", "arithmetic"))
    defaults = AlgorithmConfig()
    adaptive_keys = [k for k in ("quantile", "clip_lr", "count_noise") if getattr(a, k) != getattr(defaults, k)]
    if a.adaptive_clip == "off" and adaptive_keys:
        raise DistclipError(f"algorithm.{adaptive_keys[0]} goes with adaptive clipping; set algorithm.adaptive_clip "
                            "= 'geometric' or 'arithmetic'")
    if not 0 < a.client_rate <= 1:
        raise DistclipError(f"algorithm.client_rate = {a.client_rate} must be in (0, 1] (1: every client, every round)")
    if not 0 <= a.quantile <= 1:
        raise DistclipError(f"algorithm.quantile = {a.quantile} must be in [0, 1] (the target unclipped fraction)")
    if not 0 <= a.clip_lr < math.inf:
        raise DistclipError(f"algorithm.clip_lr = {a.clip_lr} must be a finite number >= 0 (0: fixed clipping)")
    if a.count_noise is not None and not 0 <= a.count_noise < math.inf:
        raise DistclipError(f"algorithm.count_noise = {a.count_noise} must be a finite number >= 0")
    if private and a.adaptive_clip != "off":
        if a.count_noise == 0:
            raise DistclipError("private adaptive clipping needs count noise: remove algorithm.count_noise = 0 "
                                "(default N/20) or set it > 0")
        if math.isinf(a.tau):
            raise DistclipError("adaptive clipping starts from algorithm.tau = C0; give a finite C0 such as 0.1")
    if private and a.adaptive_clip == "off" and math.isinf(a.tau):
        raise DistclipError("dp-fedavg with noise needs a finite clipping norm algorithm.tau (noise std z·C/N)")

# -- writing the resolved config -------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "inf" if v == math.inf else "-inf" if v == -math.inf else "nan" if math.isnan(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _applies(cfg: Config, section: str, name: str) -> bool:
    """Whether key ``section.name`` means anything for this config (only those are written out)."""
    if section == "problem":
        return cfg.problem.kind in _PROBLEM_KEYS.get(name, {cfg.problem.kind})
    if section == "algorithm" and cfg.algorithm.name in ALGORITHMS:
        spec = ALGORITHMS[cfg.algorithm.name]
        scheduled = {"lr", "lr_schedule", "milestones", "decay"} if cfg.algorithm.lr_schedule != "constant" else {"lr"}
        return name == "name" or (name in scheduled and spec.uses_lr) or name in spec.params
    return True


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML: defaults filled in, keys that do not apply or are unset omitted.

    A sweep config is written as given (its runs are resolved one by one)."""
    if cfg.sweep:
        return dump_toml(cfg.raw)
    doc: dict[str, Any] = {"seed": cfg.seed}
    for name in SECTIONS:
        section = getattr(cfg, name)
        doc[name] = {
            _key(f): getattr(section, f.name)
            for f in dataclasses.fields(section)
            if getattr(section, f.name) is not None and _applies(cfg, name, f.name)
        }
    return dump_toml(doc)


def dump_toml(doc: dict[str, Any]) -> str:
    """Write a config document (scalars, tables, arrays of tables) as TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict | list) or
             (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]
    for name, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            for entry in value:
                lines.append(f"\n[[{name}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"
