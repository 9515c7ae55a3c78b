"""How a stage declares its options: one :class:`Option` per command-line option, with where the
workflow takes its value from (``config``: a config key or a function of the config; ``speed``: a
speed-only config key), so that the parser, the Snakemake rule and ``params.yaml`` all come from it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def json_object(text: str) -> dict:
    """An argparse type: a JSON object, or ``@FILE#key/key`` for the mapping at that path of a YAML or
    JSON file (dvc.yaml passes ``@params.yaml#settings/<model>``, so that ``dvc exp run -S`` on
    params.yaml reaches the job)."""
    if text.startswith("@"):
        return _from_file(text[1:])
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _yaml12_loader():
    """PyYAML's safe loader with YAML 1.2's floats: DVC writes params.yaml as YAML 1.2 (``lr: 1e-05``),
    which YAML 1.1 reads as the string '1e-05' (no dot before the exponent)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
    return Loader


def _from_file(ref: str) -> dict:
    import yaml

    path, _, keys = ref.partition("#")
    try:
        with open(path) as fh:
            value = yaml.load(fh, Loader=_yaml12_loader())  # noqa: S506 (a safe loader)
    except (OSError, yaml.YAMLError) as err:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {err}") from None
    for key in filter(None, keys.split("/")):
        if not isinstance(value, dict) or key not in value:
            raise argparse.ArgumentTypeError(f"{path} has no {keys!r} (no {key!r} there)")
        value = value[key]
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{path}#{keys} is not a mapping")
    return value


def optional(kind: Callable) -> Callable:
    """An argparse type that reads ``none``/``null``/empty as None, else ``kind``."""
    def parse(text: str):
        return None if text in ("", "none", "None", "null") else kind(text)
    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


@dataclass(frozen=True)
class Option:
    """One option of a stage. ``flag`` is ``--name`` (or a bare name for a positional argument).

    Where a workflow run takes the value from: ``config`` (a dotted config key, or a function of the
    validated config), passed on the stage's command line and tracked (a change re-runs the job);
    ``speed`` (a dotted config key, ``model.<key>`` for a model's own setting), which sets only how
    fast the job runs: given as threads or read from a ``--speed`` file, never tracked. Neither: a
    file or a wildcard, wired by the rule itself."""

    flag: str
    help: str
    type: Callable | None = None
    default: Any = None
    nargs: str | int | None = None
    required: bool = False
    choices: tuple | None = None
    switch: bool = False
    config: str | Callable[[dict], Any] | None = None
    speed: str | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def positional(self) -> bool:
        return not self.flag.startswith("-")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.switch:
            parser.add_argument(self.flag, action="store_true", help=self.help.replace("%", "%%"))
            return
        # argparse formats help with %: a literal one (the "95% intervals") is doubled
        kwargs = {"help": (self.help + self._default_text()).replace("%", "%%"), "nargs": self.nargs,
                  "choices": self.choices, "metavar": self.metavar}
        if self.type is not None:
            kwargs["type"] = self.type
        if not self.positional:
            kwargs.update(default=self.default, required=self.required)
        parser.add_argument(self.flag, **{k: v for k, v in kwargs.items() if v is not None or k == "default"})

    def _default_text(self) -> str:
        """`` (default: X)`` for --help, where a default exists and the help does not say it already."""
        if self.positional or self.default in (None, [], ()) or "default" in self.help:
            return ""
        shown = " ".join(map(str, self.default)) if isinstance(self.default, (list, tuple)) else self.default
        return f" (default: {shown})"

    def argv(self, value: Any) -> list[str]:
        """The command-line words that give this option ``value`` (none for None or a false switch)."""
        if value is None or (self.switch and not value):
            return []
        if self.switch:
            return [self.flag]
        if isinstance(value, dict):
            words = [json.dumps(value, sort_keys=True)]
        elif isinstance(value, (list, tuple)):
            words = [str(v) for v in value]
        else:
            words = [str(value)]
        return words if self.positional else [self.flag, *words]


SPEED_FILE = Option("--speed", "read the speed-only options not given here (threads, workers) from FILE's "
                    "speed.<command> section (dvc.yaml passes params.yaml)", metavar="FILE")


def build(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    """Add a stage's options to its subparser (and ``--speed FILE`` where some are speed-only)."""
    for option in options:
        option.add_to(parser)
    if any(o.speed for o in options):
        SPEED_FILE.add_to(parser)


def device_options(threads_speed: str | None) -> tuple[Option, ...]:
    """Where a model runs: the device and, on a CPU, how many threads (speed-only in a workflow)."""
    return (
        Option("--threads", "CPU threads (default: 1)", type=int, speed=threads_speed),
        Option("--device", "cuda, cuda:1, cpu or auto (cuda if available)", default="auto",
               config="compute.device" if threads_speed else None),
    )


def model_inputs(threads_speed: str | None) -> tuple[Option, ...]:
    """What a job that runs a model on cached images reads: the cache, the manifest, the model's settings."""
    return (
        Option("--cache", "cache array (.npy)", required=True),
        Option("--cache-index", "cache index (.parquet)", required=True),
        Option("--manifest", "manifest.parquet", required=True),
        Option("--dataset", "the dataset name the manifest must carry", required=True,
               config="dataset" if threads_speed else None),
        Option("--settings-json", "the model's resolved settings (train defaults + model overrides)",
               type=json_object, required=True),
        *device_options(threads_speed),
    )


def weights_inputs(threads_speed: str | None, settings_required: bool = True) -> tuple[Option, ...]:
    """What a job that explains a trained model reads: its weights and settings."""
    return (
        Option("--weights", "the trained model (model.safetensors)", required=True),
        Option("--settings-json", "the model's resolved settings (arch, image_size, target_layer)",
               type=json_object, required=settings_required),
        *device_options(threads_speed),
    )
