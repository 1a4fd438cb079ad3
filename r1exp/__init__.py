"""r1exp: one Hydra entrypoint for reproducing DeepSeek-R1 (SFT, GRPO, eval, generate).

Nothing heavy is imported here: `r1exp --cfg job`, `--help` and submitit pickling must stay fast.
"""

__version__ = "0.1.0"
