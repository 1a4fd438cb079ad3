"""Distillation data at scale: prompts -> samples from an engine -> scored -> a dataset dir.

- `prompts`:   the problems of a dataset config, rendered with `generate.prompt_template`
- `engines`:   registry of engines (transformers, vllm in-process; openai over HTTP)
- `client`:    the OpenAI-compatible streaming client: bounded in flight, retries, timeouts
- `ledger`:    every sample, committed shard by shard with atomic renames (the resume unit)
- `filtering`: scoring with r1exp.rewards and the `generate.keep` modes
- `output`:    the dataset dir (train-*.jsonl + manifest.json) and the optional hub upload
The stage runner r1exp/stages/generate.py strings them together.
"""
