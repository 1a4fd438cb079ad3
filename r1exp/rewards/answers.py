"""Cheap, parent-side answer handling: find the final answer and decide the easy cases.

Everything here is plain string work that runs in linear time, so it may run inline in the
caller's process without a time limit. Anything that needs math-verify (sympy) is decided in the
scoring workers instead (math_backend.py), where a hang can be killed.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

THINK_END = "</think>"
# A boxed answer longer than this is not an answer; the cap keeps the brace scan linear.
MAX_BOXED_CHARS = 2000
# How many `\boxed` occurrences (from the end) to try before giving up on unbalanced ones.
MAX_BOXED_TRIES = 5
BOXED_COMMANDS = ("\\boxed", "\\fbox")
GSM8K_MARKER = "####"
# Python refuses int() of longer digit strings (sys.int_info.default_max_str_digits is 4300);
# an answer this long is no integer worth reading exactly.
MAX_EXACT_CHARS = 4000

_NUMBER = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_INTEGER = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)")
# `\frac{3}{4}`, `\dfrac43`, `\frac 3{4}` (each argument braced or one digit), or `3/4`.
_FRACTION = re.compile(
    r"([-\u2212])?\s*(?:\\[dt]?frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))"
    r"|(\d+)\s*/\s*(\d+))"
)
_GOLD_CHOICE = re.compile(r"\(?([A-D])\)?")
_PRED_CHOICE = re.compile(r"(?:\\(?:text|textbf|mathrm)\{)?\(?([A-D])\)?\}?")
_ANSWER_CHOICE = re.compile(r"(?i:answer)\W{0,6}(?:(?i:is)\W{1,6})?\(?([A-D])\)?(?![A-Za-z0-9])")
_PARENTHESISED_CHOICE = re.compile(r"\(([A-D])\)")
_BOLD_WRAPPER = re.compile(r"\\(?:textbf|mathbf|bf)\{([^{}]*)\}")
_SPACING_COMMANDS = re.compile(r"\\[,;:! ]|\\left\b|\\right\b|\\displaystyle\b")
_FRAC_VARIANTS = re.compile(r"\\[dt]frac\b")
_DEGREES = re.compile(r"\^\{?\\circ\}?")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textrm|mathrm|mbox)\{([^{}]*)\}")
# A number standing alone: not part of a word ("v2", "2nd") or of an expression's operand ("9-17").
_STANDALONE_NUMBER = re.compile(r"(?<![\w.])(?:[-\u2212](?=\d))?\d+(?:,\d{3})*(?:\.\d+)?(?!\w)")
# Plain numbers joined by arithmetic operators ("16 + 12", "3 \\times 4", "(0 - 1).").
_PLAIN_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_OPERATOR = r"(?:[-+*\u00d7\u00b7\u00f7\u2212]|\\times|\\cdot|\\div)"
_UNEVALUATED_ARITHMETIC = re.compile(
    rf"\(?\s*[-\u2212]?\s*{_PLAIN_NUMBER}(?:\s*{_OPERATOR}\s*[-\u2212]?\s*{_PLAIN_NUMBER})+"
    r"\s*\)?\s*\.?"
)
# Whitespace is dropped unless it separates two digits ("2 3" must not become "23").
_SPACE_NOT_BETWEEN_DIGITS = re.compile(r"(?<!\d)\s+|\s+(?!\d)")


def completion_text(completion) -> str:
    """The text of a completion: a plain string, or the last message of a chat completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content", "")
    elif isinstance(completion, (list, tuple)) and completion:
        return completion_text(completion[-1])
    else:
        return ""
    if isinstance(content, list):  # multimodal content parts: keep the text parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def answer_region(text: str) -> str:
    """R1 output format: the answer is what follows the last `</think>` (all text if none)."""
    cut = text.rfind(THINK_END)
    return text if cut < 0 else text[cut + len(THINK_END):]


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), else None."""
    end = len(text)
    for _ in range(MAX_BOXED_TRIES):
        start, command = max((text.rfind(c, 0, end), c) for c in BOXED_COMMANDS)
        if start < 0:
            return None
        content = _argument(text, start + len(command))
        if content is not None and content.strip():
            return content.strip()
        end = start
    return None


def _argument(text: str, pos: int) -> str | None:
    """The braced argument starting at text[pos] (or a space-separated token), else None."""
    window = text[pos:pos + MAX_BOXED_CHARS]
    spaced = len(window) - len(window.lstrip())
    pos += spaced
    if not text.startswith("{", pos):
        if not spaced:  # `\boxedfoo` is some other command
            return None
        token = text[pos:pos + MAX_BOXED_CHARS].split(None, 1)
        return token[0].rstrip("$.") if token else None
    depth = 0
    for i in range(pos, min(len(text), pos + MAX_BOXED_CHARS + 2)):
        char = text[i]
        if char == "{" and text[i - 1] != "\\":
            depth += 1
        elif char == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[pos + 1:i]
    return None


def gsm8k_final(text: str) -> str | None:
    """GSM8K's final-answer marker: the rest of the line after the last `####`."""
    cut = text.rfind(GSM8K_MARKER)
    if cut < 0:
        return None
    answer = text[cut + len(GSM8K_MARKER):].split("\n", 1)[0].strip()
    return answer if answer and len(answer) <= MAX_BOXED_CHARS else None  # as for \boxed


def final_answer(region: str) -> str | None:
    """The explicitly marked final answer of a completion: last boxed, else GSM8K `####`."""
    marked = last_boxed(region) or gsm8k_final(region)
    return clean_answer(marked) if marked is not None else None


def last_number(text: str) -> str | None:
    """The last number standing alone in `text` ("... 9 + 17 = 26." -> "26"), else None.

    Only numbers, never expressions: an expression would let a completion that merely restates
    the question ("9 + 17") count as its answer.
    """
    last = None
    for last in _STANDALONE_NUMBER.finditer(text):
        pass
    return last.group(0) if last else None


def unevaluated_arithmetic(answer: str) -> bool:
    """Whether `answer` is plain numbers joined by +, -, times or divide signs ("16 + 12").

    That is a calculation left to the grader, not a final answer: a GRPO run on the arithmetic
    task learned to restate the question ("The final answer is 16 + 12.") and math-verify,
    which simplifies expressions, scored it correct. Fractions (`3/4`, `\\frac34`), powers
    and roots are values and never match.
    """
    return bool(_UNEVALUATED_ARITHMETIC.fullmatch(answer.strip().strip("$").strip()))


def gold_answer(gold: str) -> str:
    """The answer inside a gold string that may be a bare answer or a whole worked solution."""
    gold = gold.strip()
    marked = final_answer(gold)
    answer = marked if marked is not None else gold
    if len(answer) >= 2 and answer[0] == answer[-1] == "$":
        answer = answer.strip("$").strip()
    return answer


def exact_rational(text: str) -> Fraction | None:
    """Integers and fractions of integers as exact values: `025`, `(073)`, `1,450,000`, `-3`,
    `\\frac{3}{4}`, `\\dfrac43`, `-\\frac{1}{2}`, `3/4`. None for anything else (decimals
    included: math-verify compares those after rounding, which this must not second-guess)."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if len(text) > MAX_EXACT_CHARS:
        return None
    if _INTEGER.fullmatch(text):
        return Fraction(int(text.replace(",", "").replace("\u2212", "-")))
    match = _FRACTION.fullmatch(text)
    if not match:
        return None
    sign, numerator, denominator = match.group(1), None, None
    numerator = match.group(2) or match.group(3) or match.group(6)
    denominator = match.group(4) or match.group(5) or match.group(7)
    if int(denominator) == 0:
        return None
    value = Fraction(int(numerator), int(denominator))
    return -value if sign else value


def number_value(text: str) -> Decimal | None:
    """A plain decimal number (thousands separators allowed) as a Decimal, else None."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text.replace(",", "").replace("\u2212", "-"))
    except InvalidOperation:
        return None


def without_thousands_separators(text: str) -> str:
    """`1,450,000` -> `1450000`, so LaTeX parsing does not read the commas as a tuple."""
    value = number_value(text)
    return text if value is None or "," not in text else format(value, "f")


def gold_choice(gold: str) -> str | None:
    """The letter of a multiple-choice gold answer (`B`, `(B)`), else None."""
    match = _GOLD_CHOICE.fullmatch(gold.strip())
    return match.group(1) if match else None


def predicted_choice(answer: str) -> str | None:
    """The letter of a boxed multiple-choice answer (`B`, `(B)`, `\\text{B}`), else None."""
    match = _PRED_CHOICE.fullmatch(answer.strip())
    return match.group(1) if match else None


def choice_in_text(text: str) -> str | None:
    """The chosen letter in free text: the last "answer is (B)", else the last "(B)", else a
    text that is just the letter. Bounded regexes over a bounded tail: linear time."""
    for pattern in (_ANSWER_CHOICE, _PARENTHESISED_CHOICE):
        matches = pattern.findall(text)
        if matches:
            return matches[-1]
    return predicted_choice(text.strip().rstrip("."))


def clean_answer(answer: str) -> str:
    """Drop what decorates an answer without changing it: a final period, `\\textbf{}`."""
    answer = answer.strip().rstrip(".").strip()
    match = _BOLD_WRAPPER.fullmatch(answer)
    return match.group(1).strip() if match else answer


def exact_form(latex: str) -> str:
    """A canonical spelling for string equality; every rewrite keeps the mathematical meaning."""
    latex = _SPACING_COMMANDS.sub("", latex)
    latex = _FRAC_VARIANTS.sub(r"\\frac", latex)
    latex = _DEGREES.sub("", latex)
    latex = _TEXT_WRAPPER.sub(r"\1", latex)
    latex = _SPACE_NOT_BETWEEN_DIGITS.sub("", latex)
    return latex.rstrip(".")
