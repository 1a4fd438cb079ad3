"""Model loading: hub ids, local dirs and the embedded GGUF model through one path."""

from r1exp.models.loading import load_model, load_tokenizer, resolve_model_dir

__all__ = ["load_model", "load_tokenizer", "resolve_model_dir"]
