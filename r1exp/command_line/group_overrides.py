"""Check the command line's config-group choices before Hydra composes anything.

Hydra reports a typo in a group choice in several ways, some of them a traceback:
`hardware=3060` (an int) ends in "Config group override must be a string or a list. Got int",
`reward=[accuracy,nonexistent]` names the missing file but not the rewards that exist. Checking
each group override against its group's options first gives one message with the options for
single and multi-select groups (`reward=[a,b]`), nested ones (`hydra/launcher=...`), `+group=`,
`~group=` and multirun sweeps (`-m hardware=cpu,3060`), and exits 2 like every config error.

A knob of a stage the run does not run (`grpo.temperature=0.7` with stage=sft) is refused here
too: that stage's knob groups are not composed, so Hydra would fail and suggest `+key=`, or,
where a recipe set the node, the run would leave the knob out without a word. So is a recipe
whose own stage's knob groups the chosen stage does not compose (`experiment=countdown-zero
stage=sft`): the message names the recipe's stage and the recipes of the chosen one.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

from hydra.core.override_parser.types import Override, QuotedString, ValueType
from omegaconf import DictConfig, OmegaConf

from r1exp.config.schema import RunConfig
from r1exp.config.stage_nodes import KNOB_NODES, foreign_knob_overrides, nodes_read
from r1exp.errors import ConfigError, config_error_exit
from r1exp.stages import STAGES

# Keys that moved, with why: the old spelling gets a config error naming the new one. A key
# under a moved node moves with it (`eval.vllm.max_model_len` -> `inference.vllm.max_model_len`).
_ONE_ENGINE_NODE = "eval, generate and GRPO's rollouts read one engine node, `inference`"
RENAMED_KEYS = {
    "train.resume": ("resume", "every stage resumes, an eval and a generation too, "
                               "and only training stages compose `train`"),
    "eval.backend": ("eval.evaluator", "r1exp | lighteval; r1exp's engine is inference.engine: "
                                       "eval.backend=vllm is inference.engine=vllm"),
    "eval.batch_tokens": ("inference.batch_tokens", _ONE_ENGINE_NODE),
    "eval.vllm": ("inference.vllm", _ONE_ENGINE_NODE),
    "generate.engine": ("inference.engine", _ONE_ENGINE_NODE),
    "generate.endpoint": ("inference.openai.endpoint", _ONE_ENGINE_NODE),
    "generate.endpoint_model": ("inference.openai.model", _ONE_ENGINE_NODE),
    "generate.max_in_flight": ("inference.openai.max_in_flight", _ONE_ENGINE_NODE),
    "generate.request_timeout_s": ("inference.openai.request_timeout_s", _ONE_ENGINE_NODE),
    "generate.max_retries": ("inference.openai.max_retries", _ONE_ENGINE_NODE),
    "generate.retry_backoff_s": ("inference.openai.retry_backoff_s", _ONE_ENGINE_NODE),
    "generate.retry_backoff_max_s": ("inference.openai.retry_backoff_max_s", _ONE_ENGINE_NODE),
    "hardware.generation_backend": ("hardware.inference_engine",
                                    "the profile's default of inference.engine, which GRPO's "
                                    "rollouts read as eval and generate do; a run picks its "
                                    "engine with inference.engine=vllm"),
}
# A moved key whose values went to different places: the engines of eval.backend are
# inference.engine's, only lighteval stayed an evaluator.
MOVED_BY_VALUE = {"eval.backend": {"transformers": "inference.engine", "vllm": "inference.engine"}}
# Options of these are expanded by Hydra itself from the group's listing (`glob(*)`).
_EXPANDED_SWEEPS = (ValueType.GLOB_CHOICE_SWEEP,)
_NUMERIC_SWEEPS = (ValueType.RANGE_SWEEP, ValueType.INTERVAL_SWEEP)


def exits_on_bad_group_choice(config_dir: str) -> Callable:
    """Decorator for the @hydra.main function: check its command line's group choices first.

    Only the command-line entry (called without arguments) is checked; a config passed in (a
    sweep job, a test) was composed already.
    """

    def decorate(hydra_main: Callable) -> Callable:
        @functools.wraps(hydra_main)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if not args and not kwargs:
                _check_command_line(config_dir)
            return hydra_main(*args, **kwargs)

        return checked

    return decorate


def _check_command_line(config_dir: str) -> None:
    from hydra._internal.utils import get_args_parser  # the parser @hydra.main itself uses

    args, _ = get_args_parser().parse_known_args()
    if args.config_path or args.config_dir or args.config_name or args.experimental_rerun:
        return  # another config tree than `config_dir`: Hydra checks against that one
    try:
        check_group_overrides(args.overrides, config_dir)
    except ConfigError as err:
        config_error_exit(err)


def check_group_overrides(overrides: list[str], config_dir: str) -> None:
    """Raise one ConfigError listing every override that picks an option its group lacks."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException:
        return  # Hydra's own message shows where the syntax breaks
    renamed = [_renamed(o) for o in parsed if _moved(o.key_or_group)]
    if renamed:  # Hydra would refuse them as keys not in the config, without the new name
        raise ConfigError("\n".join(renamed))
    candidates = [o for o in parsed if "." not in o.key_or_group]
    knobs = [o for o in parsed if _node(o) in KNOB_NODES]
    if not candidates and not knobs:
        return
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        groups = _Groups(GlobalHydra.instance().config_loader())
        problems = [problem for o in candidates for problem in _problems(o, groups)]
        if not problems and knobs:
            problems = _foreign_knobs(parsed, knobs)
    if not problems:
        problems = _recipe_of_another_stage(parsed, config_dir)
    if problems:
        raise ConfigError("\n".join(problems))


def _moved(key: str) -> tuple[str, str] | None:
    """The entry of RENAMED_KEYS that `key` is, or lies under; None where it did not move."""
    for old in RENAMED_KEYS:
        if key == old or key.startswith(old + "."):
            return old, RENAMED_KEYS[old][0]
    return None


def _renamed(override: Override) -> str:
    old, new = _moved(override.key_or_group)
    new_key = new + override.key_or_group[len(old):]
    value = override.input_line.split("=", 1)[1] if "=" in override.input_line else "..."
    new_key = MOVED_BY_VALUE.get(override.key_or_group, {}).get(value, new_key)
    return (f"{override.input_line}: {old} is now `{new}` ({RENAMED_KEYS[old][1]}); "
            f"use {new_key}={value}")


def _node(override: Override) -> str:
    return override.key_or_group.split(".", 1)[0].split("/", 1)[0]


def _foreign_knobs(parsed: list[Override], knobs: list[Override]) -> list[str]:
    """Overrides of knobs that the stage of a run of this command line does not read: Hydra
    would refuse a key of a node the stage does not compose (and suggest `+key=`), or the run
    would leave it out without a word. Each stage the command line may run is checked."""
    lines = [o.input_line for o in knobs]
    problems: list[str] = []
    for stage in _stages(parsed):
        problems += [p for p in foreign_knob_overrides(stage, lines, STAGES) if p not in problems]
    return problems


def _recipe_of_another_stage(parsed: list[Override], config_dir: str) -> list[str]:
    """`experiment=countdown-zero stage=sft`: the recipe picks knob groups of its own stage
    (`override /reward`), which the command line's stage does not compose, so Hydra would
    stop at "Could not override 'reward'" without saying why or what to run instead."""
    by_key = {o.key_or_group: o for o in parsed}
    stage, experiment = by_key.get("stage"), by_key.get("experiment")
    not_choices = (None, *_EXPANDED_SWEEPS, *_NUMERIC_SWEEPS)  # deletions, globs, ranges
    if stage is None or experiment is None or stage.value_type in not_choices \
            or experiment.value_type in not_choices:
        return []
    recipes = {name: _recipe_groups(config_dir, name) for name in _choices(experiment)
               if isinstance(name, str)}
    problems = []
    for name, groups in recipes.items():
        own = groups.get("stage")
        for chosen in (c for c in _choices(stage) if isinstance(c, str) and c != own):
            foreign = [g for g in groups if g in KNOB_NODES
                       and g not in nodes_read(STAGES.get(chosen))]
            if foreign:
                fitting = [r for r in _recipes(config_dir)
                           if _recipe_groups(config_dir, r).get("stage") == chosen]
                problems.append(
                    f"experiment={name} stage={chosen}: the recipe is for "
                    f"{f'stage={own}' if own else 'the default stage'} and picks "
                    f"its {', '.join(f'`{g}`' for g in foreign)} knobs, which stage={chosen} "
                    f"does not compose; drop stage={chosen} to run the recipe as it is, or "
                    + (f"pick a stage={chosen} recipe: {', '.join(fitting)}" if fitting else
                       f"run stage={chosen} without it ('~experiment')"))
    return problems


def _recipes(config_dir: str) -> list[str]:
    return sorted(path.stem for path in (Path(config_dir) / "experiment").glob("*.yaml"))


def _recipe_groups(config_dir: str, name: str) -> dict[str, Any]:
    """The groups a recipe overrides in its defaults list (`override /stage: grpo`), by
    group; {} for a recipe that is not a file of conf/experiment."""
    path = Path(config_dir) / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return {}
    picked = {}
    for entry in OmegaConf.load(path).get("defaults") or []:
        if isinstance(entry, (dict, DictConfig)):
            for key, value in entry.items():
                if str(key).startswith("override /"):
                    picked[str(key)[len("override /"):]] = value
    return picked


def _stages(parsed: list[Override]) -> list[str]:
    """The stages a run (each job of a sweep) of these overrides runs: the command line's
    `stage=`, else the one each chosen recipe picks. [] where that takes more than composing
    (a glob or a sweep config): Hydra and the run's own checks speak there."""
    from hydra import compose

    by_key = {o.key_or_group: o for o in parsed}
    stage = by_key.get("stage")
    if stage is not None and not stage.is_delete():
        choices = _choices(stage)
        return [c for c in choices if isinstance(c, str)] if stage.value_type not in \
            (*_EXPANDED_SWEEPS, *_NUMERIC_SWEEPS) else []
    experiment = by_key.get("experiment")
    if "sweep" in by_key or (experiment is not None and experiment.value_type in
                             (*_EXPANDED_SWEEPS, *_NUMERIC_SWEEPS)):
        return []
    if experiment is None:
        recipes = [[]]  # the default recipe
    elif experiment.is_delete():
        recipes = [[experiment.input_line]]
    else:
        recipes = [[f"experiment={choice}"] for choice in _choices(experiment)]
    stages = []
    for recipe in recipes:
        try:
            stages.append(str(compose(config_name="config", overrides=recipe).stage))
        except Exception:  # noqa: BLE001 - a recipe that does not compose: Hydra says why
            continue
    return list(dict.fromkeys(stages))


class _Groups:
    """The config groups and their options, as Hydra's search path sees them (conf/, Hydra's
    own groups such as hydra/launcher=basic, and launcher plugins)."""

    def __init__(self, loader: Any):
        self._loader = loader

    def children(self, parent: str) -> list[str]:
        return sorted(self._loader.list_groups(parent))

    def options(self, group: str) -> list[str]:
        from hydra.core.object_type import ObjectType

        return sorted(self._loader.get_group_options(group, results_filter=ObjectType.CONFIG))


def _problems(override: Override, groups: _Groups) -> list[str]:
    key = override.key_or_group
    parent, _, leaf = key.rpartition("/")
    if leaf not in groups.children(parent):
        return _not_a_group(override, groups, parent)
    if override.value_type is None or override.value_type in _EXPANDED_SWEEPS:
        return []  # `~group` deletes whatever is chosen
    options = groups.options(key)
    listing = f"options: {', '.join(options)}"
    if override.value_type in _NUMERIC_SWEEPS:
        return [f"{override.input_line}: a numeric sweep cannot pick options of config group "
                f"'{key}'; list them instead ({key}=a,b); {listing}"]
    choices = _choices(override)
    if None in choices:  # Hydra: "Config group override must be a string or a list"
        return [f"{override.input_line}: null is not an option of config group '{key}'; "
                f"drop the group with ~{key}, or pick one of its {listing}"]
    bad = [choice for choice in choices if not _is_option(choice, options)]
    return [f"{override.input_line}: {_shown(choice)} is not an option of config group "
            f"'{key}'{_suggestion(choice, options)}; {listing}" for choice in bad]


def _not_a_group(override: Override, groups: _Groups, parent: str) -> list[str]:
    key = override.key_or_group
    if not parent:
        keys = [f.name for f in fields(RunConfig)]
        if key in keys or key == "hydra" or override.is_add() or override.is_force_add():
            return []  # a top-level config key (`seed=1`), or one added on purpose (`+foo=1`)
        return [f"{override.input_line}: '{key}' is neither a config group nor a config key; "
                f"groups: {', '.join(groups.children(''))}; keys: {', '.join(sorted(keys))}"]
    siblings = groups.children(parent)  # none when `parent` is no group either
    where = f"groups under '{parent}': {', '.join(siblings)}" if siblings else \
        f"top-level groups: {', '.join(groups.children(''))}"
    return [f"{override.input_line}: '{key}' is not a config group; {where}"]


def _choices(override: Override) -> list[Any]:
    """Every option an override names: one, a multi-select list, or each of a sweep's."""
    value = override.value()
    picks = value.list if override.is_choice_sweep() else [value]
    flat = []
    for pick in picks:
        flat.extend(pick if isinstance(pick, list) else [pick])
    return [item.text if isinstance(item, QuotedString) else item for item in flat]


def _is_option(choice: Any, options: list[str]) -> bool:
    if isinstance(choice, str) and "${" in choice:
        return True  # Hydra resolves an interpolated choice itself
    return isinstance(choice, str) and choice in options


def _shown(choice: Any) -> str:
    return repr(choice) if isinstance(choice, str) else f"{choice} ({type(choice).__name__})"


def _suggestion(choice: Any, options: list[str]) -> str:
    text = str(choice)
    if text in options:  # `hardware=1.5`-like names are parsed as numbers: quote them
        return f" (quote it to pick the option: '{text}')"
    close = difflib.get_close_matches(text, options, n=1) or [o for o in options if text in o]
    return f" (did you mean {close[0]}?)" if close else ""

