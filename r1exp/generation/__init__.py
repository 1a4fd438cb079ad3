"""Distillation data at scale: prompts -> samples from an engine -> scored -> a dataset dir.

- `prompts`:   the problems of a dataset config, rendered with `generate.prompt_template`
- `filtering`: scoring with r1exp.rewards and the `generate.keep` modes
- `output`:    the dataset dir (train-*.jsonl + manifest.json) and the optional hub upload
Engines (transformers, vllm in-process; openai over HTTP) and the sample store (every sample,
committed shard by shard with atomic renames: the resume unit) are r1exp.inference's. The
stage runner r1exp/stages/generate.py strings them together.
"""
