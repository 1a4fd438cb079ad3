"""accuracy as TRL's GRPOTrainer calls it: dataset columns as kwargs, chat completions, the
log_metric hook, counted trouble; and the callback that logs the counters."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from r1exp.errors import ConfigError
from r1exp.rewards import build_reward_functions, health_metrics

# sympy tries to integrate this in closed form and does not return (over 30 s of CPU). A value
# too big to evaluate, like 9^{9^{9^{9}}}, never gets that far: magnitude.py.
PATHOLOGICAL = r"\boxed{\int_0^1 e^{-x^2}\sin(x^5)\,dx}"


def accuracy(gold_column: str = "answer", timeout_s: float = 5.0):
    config = {"weight": 1.0, "gold_column": gold_column, "timeout_s": timeout_s}
    funcs, _ = build_reward_functions({"accuracy": config})
    return funcs[0]


def trl_call(reward, completions, metrics: dict | None = None, **columns):
    """Call `reward` with the keyword arguments TRL 1.16's _calculate_rewards passes."""
    logged = metrics if metrics is not None else {}
    return reward(
        prompts=[[{"role": "user", "content": "q"}]] * len(completions),
        completions=completions,
        completion_ids=[[1, 2, 3]] * len(completions),
        trainer_state=SimpleNamespace(global_step=3),
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: logged.__setitem__(name, value),
        **columns,
    )


def test_open_r1_accuracy_expectations():
    reward = accuracy()
    assert reward([r"\boxed{\frac{63}{400}}"], answer=[r"\frac{63}{400}"]) == [1.0]
    assert reward([r"\boxed{\frac{64}{400}}"], answer=[r"\frac{63}{400}"]) == [0.0]
    assert reward([r"\boxed{3}"], answer=["6"]) == [0.0]
    batch = [r"\boxed{\frac{63}{400}}", r"\boxed{\frac{64}{400}}"]
    assert reward(batch, answer=[r"\frac{63}{400}"] * 2) == [1.0, 0.0]


def test_called_like_trl_with_chat_completions_and_extra_columns():
    completions = [
        [{"role": "assistant", "content": "<think>2+2</think> The answer is \\boxed{4}."}],
        [{"role": "assistant", "content": "I think it is \\boxed{5}."}],
        [{"role": "assistant", "content": ""}],
    ]
    metrics: dict = {}
    result = trl_call(accuracy(), completions, metrics, answer=["4", "4", "4"],
                      problem=["2+2?"] * 3)
    assert result == [1.0, 0.0, 0.0]
    assert metrics == {"rewards/accuracy/timeouts": 0.0, "rewards/accuracy/errors": 0.0,
                       "rewards/accuracy/gold_unparsed": 0.0}


def test_gold_column_is_a_parameter():
    solutions = ["We add them, so the sum is $\\boxed{12}$."]
    assert accuracy(gold_column="solution")([r"\boxed{12}"], solution=solutions) == [1.0]


def test_missing_gold_column_is_a_config_error_naming_the_columns():
    with pytest.raises(ConfigError, match=r"reward\.accuracy\.gold_column='answer'.*'problem'"):
        trl_call(accuracy(), ["\\boxed{1}"], problem=["1?"])


def test_unparseable_gold_gives_none_and_is_counted():
    before = health_metrics().get("rewards/accuracy/gold_unparsed_total", 0.0)
    metrics: dict = {}
    assert trl_call(accuracy(), [r"\boxed{1}"], metrics, answer=["???"]) == [None]
    assert metrics["rewards/accuracy/gold_unparsed"] == 1.0
    assert health_metrics()["rewards/accuracy/gold_unparsed_total"] == before + 1


def test_a_timeout_scores_zero_and_is_counted_per_reward():
    before = health_metrics().get("rewards/accuracy/timeouts_total", 0.0)
    metrics: dict = {}
    result = trl_call(accuracy(timeout_s=1.0), [PATHOLOGICAL, r"\boxed{2}"], metrics,
                      answer=["1", "2"])
    assert result == [0.0, 1.0]
    assert metrics["rewards/accuracy/timeouts"] == 1.0
    assert health_metrics()["rewards/accuracy/timeouts_total"] == before + 1


def test_health_callback_adds_counters_to_the_logs():
    from r1exp.rewards import RewardHealthCallback

    accuracy()([r"\boxed{1}"], answer=["???"])  # at least one counter exists
    state = SimpleNamespace(log_history=[{"loss": 1.0, "step": 1}])
    logs = {"loss": 1.0}
    RewardHealthCallback().on_log(args=None, state=state, control=None, logs=logs)
    assert logs["rewards/accuracy/gold_unparsed_total"] >= 1.0
    assert state.log_history[-1]["rewards/accuracy/gold_unparsed_total"] >= 1.0
