"""Measuring tools, not tests: benchmarks of r1exp against plain TRL, vLLM and lighteval, and the
multi-GPU validation, with the shell glue of the device calls that ran them (docs/performance.md,
docs/scale-out.md, docs/vllm.md). They live beside the tests, outside the wheel, and run from
the checkout's root as `python -m tests.bench.<name>` (the tests import them as `tests.bench.*`
too, so each module is loaded under one name).
"""
