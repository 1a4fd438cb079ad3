"""A small OpenAI-compatible server over a transformers model, for tests and benchmarks.

`python -m r1exp.serve.openai_server --port N` serves `/v1/chat/completions` and `/v1/models`
the way `vllm serve` does (the subset r1exp's generate stage uses), with transformers'
continuous batching underneath and opt-in fault injection (`--test-hooks`). It is not a
production server: use vLLM or SGLang for real distillation runs.
"""
