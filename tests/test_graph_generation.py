"""GRPO's graph-recorded generation (r1exp/perf/graph_generation.py) against transformers'
own generate, on tiny random models: the same tokens where decoding is deterministic, the same
support where it samples, and transformers' generate wherever the loop cannot follow."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import (
    GenerationConfig, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config,
    Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM,
)

from r1exp.perf import graph_generation
from r1exp.perf.graph_generation import CHUNK_STEPS, use_graph_generation
from r1exp.perf.static_decoder import unsupported_reason

VOCAB, PAD, EOS = 96, 0, 1
SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, vocab_size=VOCAB, pad_token_id=PAD, eos_token_id=EOS)
FAMILIES = {"qwen2": (Qwen2ForCausalLM, Qwen2Config), "llama": (LlamaForCausalLM, LlamaConfig),
            "qwen3": (Qwen3ForCausalLM, Qwen3Config)}


def tiny_model(family="qwen2", device="cpu", **extra):
    model_class, config_class = FAMILIES[family]
    torch.manual_seed(0)
    return model_class(config_class(**SHAPE, **extra)).to(device).eval()


def left_padded_prompts(device="cpu"):
    """Three prompts of 7, 4 and 6 tokens, left-padded as TRL pads them."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, VOCAB, (3, 7), generator=generator)
    mask = torch.ones_like(ids)
    for row, pad in ((1, 3), (2, 1)):
        ids[row, :pad], mask[row, :pad] = PAD, 0
    return ids.to(device), mask.to(device)


def greedy(max_new_tokens=20, **options):
    return GenerationConfig(**{"max_new_tokens": max_new_tokens, "do_sample": False,
                               "pad_token_id": PAD, "eos_token_id": [EOS], **options})


def both(model, config, ids, mask):
    """transformers' generate, then the same call through the graph loop."""
    reference = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    use_graph_generation(model)
    return reference, model.generate(input_ids=ids, attention_mask=mask, generation_config=config)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_decoding_gives_transformers_tokens(family):
    model = tiny_model(family)
    ids, mask = left_padded_prompts()
    reference, mine = both(model, greedy(max_new_tokens=2 * CHUNK_STEPS + 3), ids, mask)
    assert mine.shape == reference.shape == (3, 7 + 2 * CHUNK_STEPS + 3)
    assert torch.equal(mine, reference)


def test_eos_ends_a_sequence_with_padding_and_the_batch_where_generate_ends_it():
    model = tiny_model()
    ids, mask = left_padded_prompts()
    free = model.generate(input_ids=ids, attention_mask=mask, generation_config=greedy(40))
    # EOS: tokens the free run writes, so sequences end at different steps (on both sides of a
    # chunk's end), pad after their end, and generate() stops at the last one.
    stops = [int(free[row, 7 + step]) for row, step in ((0, 3), (1, 9), (2, 21))]
    config = greedy(40, eos_token_id=stops)
    reference, mine = both(model, config, ids, mask)
    assert reference.shape[1] < 7 + 40  # the case tested: generate() stopped early
    assert torch.equal(mine, reference)


def test_min_new_tokens_holds_eos_back_as_generate_does():
    model = tiny_model()
    ids, mask = left_padded_prompts()
    free = model.generate(input_ids=ids, attention_mask=mask, generation_config=greedy(30))
    early_stop = int(free[0, 7 + 2])
    config = greedy(30, eos_token_id=[early_stop], min_new_tokens=12)
    reference, mine = both(model, config, ids, mask)
    assert torch.equal(mine, reference)
    assert early_stop not in mine[:, 7:7 + 12].tolist()


def test_sampling_draws_only_what_the_warpers_keep_at_their_frequencies():
    model = tiny_model()
    prompt = torch.randint(2, VOCAB, (1, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(prompt).logits[0, -1].float()
    top = torch.topk(logits / 0.7, 3)
    expected = dict(zip(top.indices.tolist(), top.values.softmax(-1).tolist()))
    use_graph_generation(model)
    batch = 2000
    config = GenerationConfig(max_new_tokens=1, do_sample=True, temperature=0.7, top_k=3,
                              pad_token_id=PAD, eos_token_id=[EOS])
    torch.manual_seed(3)
    out = model.generate(input_ids=prompt.repeat(batch, 1),
                         attention_mask=torch.ones(batch, 5, dtype=torch.long),
                         generation_config=config)
    first = out[:, 5].tolist()
    assert set(first) <= set(expected)
    for token, probability in expected.items():  # 2000 draws: a few standard errors
        assert first.count(token) / batch == pytest.approx(probability, abs=0.05)


def test_top_k_one_sampling_is_greedy():
    model = tiny_model()
    ids, mask = left_padded_prompts()
    reference = model.generate(input_ids=ids, attention_mask=mask, generation_config=greedy(20))
    use_graph_generation(model)
    config = GenerationConfig(max_new_tokens=20, do_sample=True, top_k=1, pad_token_id=PAD,
                              eos_token_id=[EOS])
    assert torch.equal(model.generate(input_ids=ids, attention_mask=mask,
                                      generation_config=config), reference)


def test_options_the_loop_lacks_fall_back_to_generate_and_say_so(caplog):
    model = tiny_model()
    ids, mask = left_padded_prompts()
    config = greedy(12, repetition_penalty=1.3)
    with caplog.at_level(logging.WARNING, logger=graph_generation.__name__):
        reference, mine = both(model, config, ids, mask)
    assert torch.equal(mine, reference)
    assert "generation_config.repetition_penalty=1.3" in caplog.text
    assert model.generate.rollout is None


def test_models_outside_the_family_fall_back_to_generate():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=VOCAB,
                                       pad_token_id=PAD, eos_token_id=EOS)).eval()
    assert "model type 'gpt2'" in unsupported_reason(model)
    assert "sliding-window" in unsupported_reason(tiny_model(
        use_sliding_window=True, sliding_window=4, max_window_layers=0))
    ids, mask = left_padded_prompts()
    reference, mine = both(model, greedy(8), ids, mask)
    assert torch.equal(mine, reference)


def test_one_rollout_per_shape_and_a_new_one_when_the_weights_move():
    model = tiny_model()
    generation = use_graph_generation(model)
    ids, mask = left_padded_prompts()
    model.generate(input_ids=ids, attention_mask=mask, generation_config=greedy(8))
    first = generation.rollout
    model.generate(input_ids=ids[:, 2:], attention_mask=mask[:, 2:], generation_config=greedy(8))
    assert generation.rollout is first  # a shorter prompt fits the same cache
    model.double()  # new parameter tensors: a recorded graph would read the old ones
    model.generate(input_ids=ids, attention_mask=mask, generation_config=greedy(8))
    assert generation.rollout is not first
    assert generation.rollout.decoder.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_recorded_graphs_replay_transformers_tokens_on_cuda():
    model = tiny_model(device="cuda")
    ids, mask = left_padded_prompts("cuda")
    config = greedy(max_new_tokens=3 * CHUNK_STEPS)
    reference, mine = both(model, config, ids, mask)
    assert model.generate.rollout.graph is not None
    assert torch.equal(mine, reference)
    again = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    assert torch.equal(again, reference)  # a replay starts from the new prompt's state


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_replays_draw_new_random_numbers():
    model = tiny_model(device="cuda")
    use_graph_generation(model)
    prompt = torch.randint(2, VOCAB, (1, 5), device="cuda").repeat(8, 1)
    config = GenerationConfig(max_new_tokens=2 * CHUNK_STEPS, do_sample=True, min_new_tokens=64,
                              pad_token_id=PAD, eos_token_id=[EOS])
    first, second = (model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                    generation_config=config)[:, 5:] for _ in range(2))
    assert model.generate.rollout.graph is not None
    assert len({tuple(row) for row in first.tolist()}) == 8  # rows differ within a replay
    assert not torch.equal(first, second)  # and between replays


def test_trl_grpo_trains_on_graph_generation(tmp_path):
    """TRL's own call (its unwrap context, left-padded prompts, its generation config) goes
    through the graph loop, not around it, and the trainer takes what comes back."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from tests.bench.gpu_workloads import _tokenizer, _word_tokenizer, bench_reward

    tiny_model().save_pretrained(tmp_path / "model")
    _word_tokenizer(VOCAB).save_pretrained(tmp_path / "model")
    prompts = [" ".join(f"t{(7 * i + j) % (VOCAB - 2) + 2}" for j in range(3 + i % 4))
               for i in range(8)]
    trainer = GRPOTrainer(
        model=str(tmp_path / "model"), reward_funcs=[bench_reward],
        args=GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
                        num_generations=4, max_completion_length=CHUNK_STEPS + 4, max_steps=2,
                        use_cpu=True, report_to="none", save_strategy="no", logging_steps=1),
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=_tokenizer(str(tmp_path / "model")))
    generation = use_graph_generation(trainer.model)
    trainer.train()
    assert generation.rollout is not None and not generation.fallbacks
    logged = [entry for entry in trainer.state.log_history if "completions/mean_length" in entry]
    assert len(logged) == 2 and all(0 < e["completions/mean_length"] <= CHUNK_STEPS + 4
                                    for e in logged)

