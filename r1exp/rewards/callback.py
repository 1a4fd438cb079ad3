"""RewardHealthCallback: adds the scoring counters (health.py) to every Trainer log.

Imports transformers, so r1exp.rewards exposes it lazily. Callbacks see `on_log` in list order:
place this one BEFORE the callbacks that report the logs (MLflow, ...), or they miss the counters.
"""

from __future__ import annotations

from transformers import TrainerCallback

from r1exp.rewards.health import health_metrics


class RewardHealthCallback(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        counters = health_metrics()
        logs.update(counters)
        if state.log_history:  # the Trainer stored its copy of `logs` before calling on_log
            state.log_history[-1].update(counters)
