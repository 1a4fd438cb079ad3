"""Rows of every layout become conversations with one trace format; chat template and EOS."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1exp.data.formatting import (
    CHATML_TEMPLATE, RowLayout, Trace, conversation, detect_layout, end_of_turn_token,
    ensure_chat_template, normalise_trace, parse_trace, to_sft_examples,
)
from group_options import option_config
from r1exp.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
STRATOS = ("<|begin_of_thought|>\n\nLet me add: 2 + 2 = 4.\n\n<|end_of_thought|>\n\n"
           "<|begin_of_solution|>\n\nThe answer is \\boxed{4}.\n\n<|end_of_solution|>")
THINK = "<think>\nLet me add: 2 + 2 = 4.\n</think>\n\nThe answer is \\boxed{4}."
STRATOS_SYSTEM = ("Your role as an assistant involves thoroughly exploring questions ... "
                  "<|begin_of_thought|> {thought} <|end_of_thought|> <|begin_of_solution|> ...")


def sft_cfg(**overrides):
    cfg = OmegaConf.load(CONF / "sft" / "default.yaml")
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def dataset_cfg(option: str, **overrides):
    cfg = option_config("dataset", option)
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


@pytest.mark.parametrize("text,expected", [
    (STRATOS, Trace("Let me add: 2 + 2 = 4.", "The answer is \\boxed{4}.")),
    (THINK, Trace("Let me add: 2 + 2 = 4.", "The answer is \\boxed{4}.")),
    # R1 distills often start after a template-prefilled <think>: no opening tag
    ("Let me add.\n</think>\n\n4", Trace("Let me add.", "4")),
    ("Just 4.", Trace(None, "Just 4.")),
])
def test_parse_trace_reads_every_markup(text, expected):
    assert parse_trace(text) == expected


@pytest.mark.parametrize("fmt,expected", [
    ("think", THINK),
    ("stratos", STRATOS),
    ("answer", "The answer is \\boxed{4}."),
])
def test_every_markup_normalises_to_each_output_format(fmt, expected):
    assert normalise_trace(STRATOS, fmt) == expected
    assert normalise_trace(THINK, fmt) == expected


def test_keep_leaves_text_alone_and_untraced_text_stays_plain():
    assert normalise_trace(STRATOS, "keep") == STRATOS
    assert normalise_trace("4", "think") == "4"


def bespoke_row():
    return {"system": STRATOS_SYSTEM,
            "conversations": [{"from": "user", "value": "What is 2 + 2?"},
                              {"from": "assistant", "value": STRATOS}]}


def test_bespoke_stratos_row_becomes_a_think_conversation():
    cfg = dataset_cfg("bespoke-stratos-17k")
    layout = detect_layout(["system", "conversations"], cfg, "solution")
    assert layout == RowLayout(conversation="conversations", system="system")
    turns = conversation(bespoke_row(), layout, trace_format="think", system_prompt=None)
    # the data's system prompt describes the Stratos markup that was rewritten away
    assert turns == [{"role": "user", "content": "What is 2 + 2?"},
                     {"role": "assistant", "content": THINK}]


def test_system_turn_kept_with_its_own_markup_or_replaced_when_configured():
    layout = RowLayout(conversation="conversations", system="system")
    kept = conversation(bespoke_row(), layout, trace_format="keep", system_prompt=None)
    assert kept[0] == {"role": "system", "content": STRATOS_SYSTEM}
    assert kept[2]["content"] == STRATOS
    replaced = conversation(bespoke_row(), layout, trace_format="stratos",
                            system_prompt="Be brief.")
    assert [t["role"] for t in replaced] == ["system", "user", "assistant"]
    assert replaced[0]["content"] == "Be brief."


def test_messages_with_r1_think_become_stratos():
    row = {"messages": [{"role": "system", "content": "You are helpful."},
                        {"role": "user", "content": "2+2?"},
                        {"role": "assistant", "content": THINK}]}
    layout = detect_layout(["messages"], dataset_cfg("openr1-math-220k"), "solution")
    turns = conversation(row, layout, trace_format="stratos", system_prompt=None)
    assert turns[0]["content"] == "You are helpful."  # describes no markup: kept
    assert turns[2]["content"] == STRATOS


def test_problem_solution_rows_become_user_assistant():
    columns = ["id", "problem", "answer", "solution"]
    layout = detect_layout(columns, dataset_cfg("gsm8k"), "solution")
    assert layout == RowLayout(prompt="problem", completion="solution")
    row = {"problem": "Add 2 and 2.", "solution": "2 + 2 = 4\n#### 4"}
    assert conversation(row, layout, trace_format="think", system_prompt=None) == [
        {"role": "user", "content": "Add 2 and 2."},
        {"role": "assistant", "content": "2 + 2 = 4\n#### 4"}]


def test_missing_columns_are_named():
    with pytest.raises(ConfigError) as err:
        detect_layout(["problem", "answer"], dataset_cfg("math500"), "solution")
    assert "lacks column(s) ['solution']" in str(err.value)
    assert "sft.completion_column" in str(err.value)


def test_unknown_role_is_a_config_error():
    row = {"conversations": [{"from": "narrator", "value": "x"}]}
    with pytest.raises(ConfigError, match="role 'narrator'"):
        conversation(row, RowLayout(conversation="conversations"), trace_format="think",
                     system_prompt=None)


def test_to_sft_examples_splits_prompt_from_completion_or_keeps_messages():
    from datasets import Dataset

    rows = [bespoke_row(), {"system": "", "conversations": [{"from": "user", "value": "hi"}]}]
    ds = Dataset.from_list(rows)
    cfg = dataset_cfg("bespoke-stratos-17k")
    split = to_sft_examples(ds, cfg, sft_cfg(loss_on="completion"))
    assert len(split) == 1  # the row without an assistant reply is dropped
    assert split[0]["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert split[0]["completion"] == [{"role": "assistant", "content": THINK}]
    whole = to_sft_examples(ds, cfg, sft_cfg(loss_on="all"))
    assert whole.column_names == ["messages"] and len(whole[0]["messages"]) == 2


def tiny_tokenizer(chat_template: str | None = None):
    """A word-level tokenizer built in memory: no download, no template unless given."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "[UNK] [PAD] </s> What is 2 + ? 4 The answer".split()
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                                        pad_token="[PAD]", eos_token="</s>")
    tokenizer.chat_template = chat_template
    return tokenizer


def test_chatml_fallback_adds_its_tokens_and_ends_turns_with_im_end():
    tokenizer = tiny_tokenizer()
    assert ensure_chat_template(tokenizer) == ["<|im_start|>", "<|im_end|>"]
    assert tokenizer.chat_template == CHATML_TEMPLATE
    assert end_of_turn_token(tokenizer) == "<|im_end|>"
    assert ensure_chat_template(tokenizer) == []  # a template is never replaced


def test_end_of_turn_token_follows_the_template():
    eos_template = ("{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}"
                    "{{ eos_token }}{% endif %}{% endfor %}")
    assert end_of_turn_token(tiny_tokenizer(eos_template)) == "</s>"
    bare = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert end_of_turn_token(tiny_tokenizer(bare)) == "</s>"  # nothing added: the EOS


def test_completion_only_labels_cover_the_reply_and_its_end_of_turn(tmp_path):
    """Through TRL's own preprocessing: prompt tokens are masked, the reply and the template's
    end-of-turn token are trained (so the model learns to stop)."""
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = tiny_tokenizer()
    ensure_chat_template(tokenizer)
    eos = end_of_turn_token(tokenizer)
    rows = Dataset.from_list([{"problem": "What is 2 + 2 ?", "solution": "The answer is 4"}])
    examples = to_sft_examples(rows, dataset_cfg("gsm8k"), sft_cfg())
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16,
                                         intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    args = SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, max_length=64,
                     eos_token=eos, report_to="none", use_cpu=True, bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=examples, processing_class=tokenizer)
    row = trainer.train_dataset[0]
    trained = [tokenizer.convert_ids_to_tokens(t)
               for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert trained[:4] == ["The", "answer", "is", "4"] and "<|im_end|>" in trained
    assert "What" not in trained
    stops = model.generation_config.eos_token_id
    stops = stops if isinstance(stops, list) else [stops]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stops
