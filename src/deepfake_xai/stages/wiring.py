"""A workflow config turned into each stage's command line, from the stages' own declarations: what
the Snakemake rules and ``params.yaml`` (for DVC) pass, so that both run a stage with the same
values. Not imported by the stages themselves (it is no part of any stage's code digest)."""

from __future__ import annotations

import importlib
import shlex
from types import ModuleType
from typing import Any

from .spec import Option

# The stages the DAG runs, in DAG order: ``deepfake-xai <name>`` runs ``stages/<name with _>.py``.
DAG_STAGES = ("synth", "download", "extract", "manifest", "cache", "pretrained", "train", "predict", "pool", "metrics", "explain-cell",
              "actmax", "montage", "xai-cell", "xai-report", "report")


def module_name(command: str) -> str:
    return command.replace("-", "_")


def stage(command: str) -> ModuleType:
    """The module of the stage ``command`` (e.g. ``xai-cell``)."""
    if command not in DAG_STAGES:
        raise KeyError(f"no stage {command!r}; the stages: {', '.join(DAG_STAGES)}")
    return importlib.import_module(f"{__package__}.{module_name(command)}")


def lookup(config: dict, key: str) -> Any:
    """``config['a']['b']`` for ``a.b``; a missing key is an error naming it."""
    value = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"the config has no {key} (a stage option reads it)")
        value = value[part]
    return value


def config_values(command: str, config: dict) -> dict[str, Any]:
    """Every config-fed option of the stage and its value for this config, by option name."""
    return {o.dest: o.config(config) if callable(o.config) else lookup(config, o.config)
            for o in stage(command).OPTIONS if o.config is not None}


def command_line(command: str, config: dict) -> str:
    """The stage's config-fed options as shell words (already quoted), in declaration order."""
    values = config_values(command, config)
    options = {o.dest: o for o in stage(command).OPTIONS}
    return shlex.join(word for dest, value in values.items() for word in options[dest].argv(value))


def _speed(option: Option, config: dict, model: str | None):
    key = option.speed
    if key.startswith("model."):
        from ..config import model_settings

        if model is None:
            return {m: model_settings(config, m)[key[len("model."):]] for m in config["models"]}
        return model_settings(config, model)[key[len("model."):]]
    return lookup(config, key)


def speed_value(command: str, config: dict, dest: str, model: str | None = None):
    """The value of the stage's speed-only option ``dest`` (e.g. ``threads``) for this config."""
    for option in stage(command).OPTIONS:
        if option.speed and option.dest == dest:
            return _speed(option, config, model)
    raise KeyError(f"stage {command} has no speed option {dest!r}")


def speed_options(command: str) -> tuple[str, ...]:
    return tuple(o.dest for o in stage(command).OPTIONS if o.speed)


def speed_section(config: dict) -> dict[str, dict]:
    """Every speed-only value as ``{stage: {option: value}}`` (a model's own setting as
    ``{model: value}``): what a job given ``--speed FILE`` reads from FILE's ``speed`` section."""
    return {command: {o.dest: _speed(o, config, None) for o in stage(command).OPTIONS if o.speed}
            for command in DAG_STAGES if speed_options(command)}
