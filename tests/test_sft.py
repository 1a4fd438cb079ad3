"""The sft stage: knobs checked up front, every recipe plans on every profile, and real runs
lower the loss and leave a model plain transformers can load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from r1exp.errors import ConfigError
from r1exp.launch.controller import prepare

CONF = Path(__file__).resolve().parents[1] / "conf"
SFT_RECIPES = ("open-r1-distill-sft", "light-r1-3060-sft", "metax-c500-distill", "smoke-sft")
HARDWARE = sorted(p.stem for p in (CONF / "hardware").glob("*.yaml"))
# A recipe on the hardware it was written for must plan, with its global batch.
HOME = {"open-r1-distill-sft": ("8xh100", 128), "light-r1-3060-sft": ("rtx3060-12g", 32),
        "metax-c500-distill": ("metax-c500", 128), "smoke-sft": ("cpu", 8)}
CONFIG_KEY_PREFIXES = ("train.", "hardware.", "sft.", "model.", "dataset.", "the plan")


def composed(overrides: list[str], run_dir: Path | str = "/tmp/r1exp-test-sft"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"paths.output_dir={run_dir}", *overrides])


@pytest.mark.parametrize("hardware", HARDWARE)
@pytest.mark.parametrize("recipe", SFT_RECIPES)
def test_dry_run_of_every_sft_recipe_on_every_profile(recipe, hardware):
    try:
        cfg, plan = prepare(composed([f"experiment={recipe}", f"hardware={hardware}",
                                      "dry_run=true"]))
    except ConfigError as err:  # must say which knob to change, never fail obscurely
        assert (recipe, hardware) not in [(r, h) for r, (h, _) in HOME.items()], err
        assert any(prefix in str(err) for prefix in CONFIG_KEY_PREFIXES), err
        return
    assert cfg.stage == "sft"
    assert f"world_size: {plan.world_size}" in plan.render()
    home, global_batch = HOME[recipe]
    assert plan.global_batch_size == global_batch
    if hardware == home:
        assert plan.world_size * plan.per_device_train_batch_size \
            * plan.gradient_accumulation_steps == global_batch


def test_metax_recipe_is_one_per_device_times_sixteen():
    plan = prepare(composed(["experiment=metax-c500-distill"]))[1]
    assert (plan.world_size, plan.per_device_train_batch_size,
            plan.gradient_accumulation_steps) == (8, 1, 16)


@pytest.mark.parametrize("override,message", [
    ("sft.loss_on=tokens",
     "sft.loss_on='tokens' is not allowed; choose one of: completion, assistant, all"),
    ("sft.packing_strategy=greedy", "sft.packing_strategy='greedy' is not allowed"),
    ("sft.trace_format=xml", "sft.trace_format='xml' is not allowed; choose one of: think"),
    ("sft.eval_steps=0", "sft.eval_steps=0 must be >= 1"),
    ("train.lr_scheduler_type=cosine_with_min_lr", "sft.lr_scheduler_kwargs.min_lr_rate"),
    ("dataset.test_split=test", "set dataset.test_split=null"),
])
def test_bad_sft_knobs_are_config_errors_before_any_loading(override, message):
    with pytest.raises(ConfigError) as err:
        prepare(composed(["experiment=smoke-sft", override]))
    assert message in str(err.value)


def test_sft_on_a_dataset_without_targets_names_the_missing_column(tmp_path):
    """Caught when the data is loaded, before the model: GSM8K-style rows lack `solution`."""
    from r1exp.data.formatting import to_sft_examples
    from r1exp.data.loading import load_split

    cfg = prepare(composed(["experiment=smoke-sft", "sft.completion_column=solution"]))[0]
    rows = load_split(cfg.dataset, cfg.dataset.train_split, seed=cfg.seed)
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['solution'\]"):
        to_sft_examples(rows, cfg.dataset, cfg.sft)


# --- in process, a tiny random model: the whole runner incl. ChatML fallback and LoRA --------


def tiny_model_dir(path: Path) -> Path:
    """A 2-layer random Llama and a word-level tokenizer with no chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["[UNK]", "[PAD]", "</s>", *"What is + ? Put the final answer in".split(),
             *map(str, range(19))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                                        pad_token="[PAD]", eos_token="</s>")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32,
                                         intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=128))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("lora", [False, True])
def test_runner_end_to_end_with_a_tiny_model(tmp_path, lora):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1exp.stages import sft

    model_dir = tiny_model_dir(tmp_path / "tiny")
    cfg = prepare(composed(["experiment=smoke-sft", f"model.path={model_dir}", "logger=none",
                            "train.max_steps=3", "train.save_steps=2", "dataset.test_size=4",
                            f"train.lora.enabled={str(lora).lower()}", "train.lora.r=4"],
                           run_dir=tmp_path / "run"))[0]
    metrics = sft.run(cfg)
    assert metrics["train/global_step"] == 3 and "eval/loss" in metrics
    saved = tmp_path / "run" / "model"
    model = AutoModelForCausalLM.from_pretrained(saved)  # plain transformers, LoRA merged
    tokenizer = AutoTokenizer.from_pretrained(saved)
    assert not any("lora" in name for name, _ in model.named_parameters())
    # the ChatML fallback added its tokens; generation stops at its end of turn
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.chat_template
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert (saved / "resolved.yaml").is_file()
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()


def test_assistant_only_loss_on_a_template_trl_cannot_mark_is_a_config_error(tmp_path):
    from r1exp.stages import sft

    model_dir = tiny_model_dir(tmp_path / "tiny")  # ChatML fallback: no generation markers
    cfg = prepare(composed(["experiment=smoke-sft", f"model.path={model_dir}", "logger=none",
                            "sft.loss_on=assistant"], run_dir=tmp_path / "run"))[0]
    with pytest.raises(ConfigError, match="sft.loss_on=assistant needs a chat template"):
        sft.run(cfg)


# --- end to end through the CLI on the embedded SmolLM2 (slow) ----------------------------

SMOKE = ["experiment=smoke-sft", "train.max_steps=4", "train.save_steps=4",
         "train.global_batch_size=2", "hardware.per_device_train_batch_size=2",
         "dataset.max_samples=4", "dataset.test_size=null"]  # 2 passes over 4 fixed rows


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny batches: threads only add overhead
    out = subprocess.run(smoke_command(tmp), cwd=tmp, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return tmp


def smoke_command(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "r1exp", *SMOKE, f"hydra.run.dir={tmp}/run",
            f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db"]


@pytest.mark.slow
def test_smoke_run_lowers_the_loss_and_streams_it_to_mlflow(smoke_run):
    from mlflow.tracking import MlflowClient

    run_dir = smoke_run / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/global_step"] == 4
    assert metrics["train/last_loss"] < 0.7 * metrics["train/first_loss"], metrics
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run}/mlflow.db")
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4]


@pytest.mark.slow
def test_saved_model_reloads_with_plain_transformers_and_stops_at_end_of_turn(smoke_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = smoke_run / "run" / "model"
    tokenizer = AutoTokenizer.from_pretrained(saved)
    model = AutoModelForCausalLM.from_pretrained(saved)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.eos_token_id == end_of_turn
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Answer with the number."},
         {"role": "user", "content": "What is 2 + 3? Put the final answer in \\boxed{}."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    reply = out[0, prompt["input_ids"].shape[1]:].tolist()
    assert end_of_turn in reply, tokenizer.decode(reply)  # it learned to stop
    assert tokenizer.decode(reply[:reply.index(end_of_turn)]).strip()


@pytest.mark.slow
def test_the_same_command_again_in_the_same_dir_is_refused_and_changes_nothing(smoke_run):
    # Resumed from its last checkpoint, transformers' Trainer would train one step past
    # max_steps and overwrite the finished model.
    from mlflow.tracking import MlflowClient

    run_dir = smoke_run / "run"
    weights = run_dir / "model" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = subprocess.run(smoke_command(smoke_run), cwd=smoke_run, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode != 0
    assert "train.max_steps=4" in again.stderr and "resume=never" in again.stderr
    assert f"final model is in {run_dir / 'model'}" in again.stderr
    assert weights.stat().st_mtime_ns == before
    assert not (run_dir / "checkpoints" / "checkpoint-5").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run}/mlflow.db")
    assert len(client.search_runs(client.search_experiments()[0].experiment_id)) == 1
