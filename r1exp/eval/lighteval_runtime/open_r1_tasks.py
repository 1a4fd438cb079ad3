"""open-r1's lighteval task definitions, over the problem files r1exp writes (lighteval 0.13).

open-r1 evaluated with a custom task file (src/open_r1/evaluate.py, until #584 moved the same
tasks into lighteval with pass@1 over several samples). Per task it fixed three things, kept
here:
- the metric: lighteval's extractive match with math-verify, predictions read as expression or
  LaTeX with a boxed answer first, precision 5, `first_match` fallback; the gold read as LaTeX
  from the reference solution (MATH-500, `gold_format: latex`) or as an expression from the
  answer (AIME, `expr`); GPQA's gold and prediction read as a letter A-D;
- pass@1 over n samples per problem (lighteval's PassAtK with k=1, i.e. the mean score);
- the prompt: each row's `query` is the user message exactly as r1exp renders it for its own
  backends (eval.prompt; `eval=open-r1` sets open-r1's template), so both backends see one text.
"""

from __future__ import annotations

import numpy as np
from lighteval.metrics.dynamic_metrics import MultilingualExtractiveMatchMetric
from lighteval.metrics.metrics_sample import PassAtK
from lighteval.metrics.utils.extractive_match_utils import (
    ExprExtractionConfig, IndicesExtractionConfig, LatexExtractionConfig)
from lighteval.metrics.utils.metric_utils import SampleLevelMetric
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc, SamplingMethod
from lighteval.utils.language import Language

LETTERS = "ABCD"
SPLIT = "train"  # a local dir holding one data.jsonl loads as the split "train"


def answer_scorer(gold_format: str) -> MultilingualExtractiveMatchMetric:
    """One sample's 0/1 score as open-r1 defined it for math answers or for letters."""
    if gold_format == "letter":
        letters = [IndicesExtractionConfig(prefix_for_extraction="NativeLetters")]
        return MultilingualExtractiveMatchMetric(
            language=Language.ENGLISH, gold_extraction_target=letters,
            pred_extraction_target=letters, precision=5)
    gold = {"latex": LatexExtractionConfig(), "expr": ExprExtractionConfig()}[gold_format]
    return MultilingualExtractiveMatchMetric(
        language=Language.ENGLISH, fallback_mode="first_match", precision=5,
        gold_extraction_target=(gold,),
        pred_extraction_target=(ExprExtractionConfig(),
                                LatexExtractionConfig(boxed_match_priority=0)),
        aggregation_function=max,
    )


def pass_at_1(gold_format: str, num_samples: int) -> SampleLevelMetric:
    return SampleLevelMetric(
        metric_name=f"pass@1:{num_samples}_samples",
        sample_level_fn=PassAtK(k=1, n=num_samples, strip_strings=True,
                                sample_scoring_function=answer_scorer(gold_format)),
        category=SamplingMethod.GENERATIVE,
        corpus_level_fn=np.mean,
        higher_is_better=True,
    )


def make_doc(line: dict, task_name: str | None = None) -> Doc:
    """A row r1exp wrote: {id, query, gold, gold_format}; `specific` carries r1exp's id."""
    if line["gold_format"] == "letter":
        choices, gold_index = list(LETTERS), LETTERS.index(line["gold"])
    else:
        choices, gold_index = [line["gold"]], 0
    return Doc(task_name=task_name, query=line["query"], choices=choices, gold_index=gold_index,
               specific={"problem_id": line["id"]})


def task_config(task: dict) -> LightevalTaskConfig:
    """`task`: {name, data_dir, gold_format, num_samples, max_new_tokens} from r1exp's spec."""
    return LightevalTaskConfig(
        name=task["name"], prompt_function=make_doc, hf_repo=task["data_dir"],
        hf_subset="default", hf_avail_splits=[SPLIT], evaluation_splits=[SPLIT],
        few_shots_split=None, few_shots_select=None,
        generation_size=task["max_new_tokens"],
        metrics=[pass_at_1(task["gold_format"], task["num_samples"])],
        stop_sequence=[],  # open-r1: none; generation ends at the end-of-sequence token
        version=0,
    )
