"""Speed levers of the hardware profile (`hardware.perf`), applied by the training stages.

Each lever keeps the training maths the same and is a knob in YAML; `docs/performance.md`
says what each one measured on an H100. `python -m tests.bench.gpu` measures them against
plain TRL.
"""

from r1exp.perf.fast_paths import (
    accelerate_trainer,
    compiles_generation,
    trainer_arguments,
    training_attention,
)

__all__ = [
    "accelerate_trainer",
    "compiles_generation",
    "trainer_arguments",
    "training_attention",
]
