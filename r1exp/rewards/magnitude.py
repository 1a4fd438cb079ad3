"""Answers too big to evaluate, recognised from the LaTeX alone, before math-verify sees them.

sympy evaluates what it is given: `9^{9^{9^{9}}}`, `1000000!` or `(10^{10})!` tie a scoring
worker up for its whole time limit (and a restart), while an honest answer never has a value
with more than a few hundred digits. So the scorer decides such answers inline
(math_score.py): the gold's own spelling still scores 1, anything else 0.

The size is an upper bound read off the string in one pass: digits of the value's height (the
larger of |numerator| and |denominator|). A literal counts its digits, a product or quotient
adds its factors' bounds, a sum adds log10(2) on top, `a^n` multiplies a's bound by n, `n!`
is at most n*log10(n) digits, `\\binom{n}{k}` at most min(n*log10(2), k*log10(n)). Values
apart (`,` `=` `;` ...) are bounded each on its own. A symbol counts 0, and a power with a
symbol in its exponent (`2^{x}`) or a factorial of one stays unevaluated in sympy, so only
numbers make a bound big: words and algebra never trip it.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

# A value may have this many digits in its numerator or denominator. Measured in a scoring
# worker, values of this size cost milliseconds (2^33000: 0.1 s; 200000!, 10^6 digits:
# 0.4 s; binom(100000, 50000), 3*10^4 digits: 0.7 s); 9^{9^9} (4*10^8 digits) and 1000000!
# (6*10^6) ran into the 5 s limit.
MAX_DIGITS = 10_000
# sympy factors the radicand of a root to simplify it: a 1,000-digit radicand cost 0.7 s.
MAX_RADICAND_DIGITS = 500
# Python refuses to read a longer integer literal (sys.int_info.default_max_str_digits), so
# sympy cannot either: such an answer is no answer.
MAX_LITERAL_DIGITS = 4300
# Brackets nested deeper than this are no answer; reading stops there instead of recursing on.
MAX_NESTING = 50

# Bounds are capped here, far above MAX_DIGITS, so that arithmetic on them never overflows.
_HUGE = 1e15
_LOG10_HUGE = math.log10(_HUGE)
_LOG10_2 = math.log10(2)
# Literals and results this short are kept exact, so that exponents and factorials of
# numbers are bounded tightly (`2^{2^{10}}` has 309 digits, not 10^(10*log10 2 + ...)).
_EXACT_DIGITS = 15
_EXACT_FACTORIAL = 17  # 17! < 10^15

_TOKEN = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+|\\[A-Za-z]+|\\.?|\*\*|!!?|\s+|.", re.DOTALL)
_DIGIT_START = frozenset("0123456789.")
_OPENERS = frozenset("{([")
_CLOSERS = frozenset("})]")
# Between values apart: a tuple's entries, an equation's sides, a matrix's cells, lines.
_SEPARATORS = frozenset(
    [",", ";", "=", "<", ">", ":", "&", "$", "\n", "\\\\", "\\le", "\\leq", "\\ge", "\\geq",
     "\\ne", "\\neq", "\\approx", "\\equiv", "\\quad", "\\qquad", "\\to", "\\in", "\\cup",
     "\\cap"]
)
_SUM_SIGNS = frozenset(["+", "-", "\u2212", "\\pm", "\\mp"])
_POWER_SIGNS = frozenset(["^", "**"])
_FACTORIAL_SIGNS = frozenset(["!", "!!"])
_IGNORED = frozenset(["\\left", "\\right", "\\displaystyle", "\\,", "\\;", "\\:", "\\!", "\\ "])
_BINOMIALS = frozenset(["\\binom", "\\dbinom", "\\tbinom"])
_GAMMAS = frozenset(["\\Gamma"])
_EXPONENTIALS = frozenset(["\\exp"])
_FRACTIONS = frozenset(["\\frac", "\\dfrac", "\\tfrac", "\\cfrac"])
# Commands whose argument is what they show: `2^\mathrm{10^{100}}` is a power of 10^{100}.
_WRAPPERS = frozenset(
    "\\" + name for name in (
        "text textbf textrm textit mbox mathrm mathbf mathit mathsf mathtt mathcal mathbb "
        "boldsymbol operatorname boxed fbox"
    ).split()
)
# e and pi are numbers (each below 10^0.5): sympy evaluates `\pi^{\pi^{\pi^{\pi}}}` as it
# does `3^{3^{3^{3}}}`. The imaginary unit counts as a symbol: powers of it turn, not grow.
_CONSTANTS = frozenset(["e", "\\pi"])
_GREEK_SYMBOLS = frozenset(
    "\\" + name for name in (
        "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu "
        "nu xi rho sigma tau upsilon phi varphi chi psi omega Delta Theta Lambda Xi Sigma "
        "Upsilon Phi Psi Omega infty"
    ).split()
)


class Size(NamedTuple):
    digits: float  # upper bound on the digits of the value's height
    exact: int | None = None  # the value itself, for small non-negative integers
    symbolic: bool = False  # has a free symbol in it: sympy leaves powers of it unevaluated


_NOTHING = Size(0.0)
_SYMBOL = Size(0.0, symbolic=True)
_CONSTANT = Size(0.5)
_TOO_BIG = Size(_HUGE)


def too_big_to_evaluate(latex: str) -> bool:
    """Whether some value written in `latex` may be too big for math-verify to handle cheaply."""
    return digits_bound(latex) > MAX_DIGITS


def digits_bound(latex: str) -> float:
    """An upper bound on the digits of the largest value written in `latex` (see the module's
    docstring); linear in the length of the text, never raises."""
    tokens = []
    for token in _TOKEN.findall(latex):
        if token.isspace():
            if "\n" in token:  # lines hold values apart; other spacing means nothing
                tokens.append("\n")
        elif token not in _IGNORED:
            tokens.append(token)
    try:
        return _Reader(tokens).whole()
    except _TooDeep:
        return _HUGE


class _TooDeep(Exception):
    pass


class _Reader:
    """A forgiving recursive-descent reader: unbalanced brackets and stray signs are skipped,
    never errors."""

    def __init__(self, tokens: list[str]):
        self._tokens, self._pos = tokens, 0

    def whole(self) -> float:
        largest = 0.0
        while self._pos < len(self._tokens):
            largest = max(largest, self._sequence(depth=0).digits)
            self._pos += 1  # a closing bracket without its opening one
        return largest

    def _peek(self) -> str | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _sequence(self, depth: int) -> Size:
        """Up to the next closing bracket: the largest of the values apart, each the product
        or sum of its factors. Exact only when it is a single factor."""
        if depth > MAX_NESTING:
            raise _TooDeep
        largest = current = 0.0
        symbolic, factors, last = False, 0, _NOTHING
        while (token := self._peek()) is not None and token not in _CLOSERS:
            if token in _SEPARATORS or token in _SUM_SIGNS:
                self._pos += 1
                factors += 2  # no single factor any more
                if token in _SUM_SIGNS:
                    current = _capped(current + _LOG10_2)
                else:
                    largest, current = max(largest, current), 0.0
                continue
            last = self._factor(depth)
            current = _capped(current + last.digits)
            symbolic = symbolic or last.symbolic
            factors += 1
        if factors == 1:
            return last
        return Size(max(largest, current), None, symbolic)

    def _factor(self, depth: int) -> Size:
        size = self._atom(depth)
        while (token := self._peek()) is not None:
            if token in _POWER_SIGNS:
                self._pos += 1
                size = _power(size, self._exponent(depth + 1))
            elif token in _FACTORIAL_SIGNS:
                self._pos += 1
                size = _factorial(size, double=token == "!!")
            elif token == "_":  # an index or a base (`x_1`, `\log_2`, `101_2`): no size itself
                self._pos += 1
                self._atom(depth + 1)
            else:
                break
        return size

    def _exponent(self, depth: int) -> Size:
        """What follows `^`: a sign is part of it, and `a^b^c` is read as a^(b^c), the larger."""
        while self._peek() in _SUM_SIGNS:
            self._pos += 1
        exponent = self._atom(depth)
        if self._peek() in _POWER_SIGNS:
            self._pos += 1
            exponent = _power(exponent, self._exponent(depth + 1))
        return exponent

    def _atom(self, depth: int) -> Size:
        if depth > MAX_NESTING:
            raise _TooDeep
        token = self._peek()
        if token is None:
            return _NOTHING
        self._pos += 1
        if token[0] in _DIGIT_START:
            return _literal(token)
        if token in _OPENERS:
            return self._group(depth)
        if token == "\\sqrt":
            return self._root(depth)
        if token in _FRACTIONS:  # one atom, so that `2^\frac{9^{9^9}}{2}` is one exponent
            numerator, denominator = self._atom(depth + 1), self._atom(depth + 1)
            symbolic = numerator.symbolic or denominator.symbolic
            return Size(_capped(numerator.digits + denominator.digits), None, symbolic)
        if token in _WRAPPERS:
            return self._atom(depth + 1)
        if token in _BINOMIALS:
            return _binomial(self._atom(depth + 1), self._atom(depth + 1))
        # The argument of Gamma and exp is read with its powers: `\exp 10^{100}` is e^(10^100).
        if token in _GAMMAS:  # Gamma(n) = (n-1)!, bounded by n!
            return _factorial(self._factor(depth + 1), double=False)
        if token in _EXPONENTIALS:
            return _power(_CONSTANT, self._factor(depth + 1))
        if token in _CONSTANTS:
            return _CONSTANT
        if token in _GREEK_SYMBOLS or (token.isascii() and token.isalpha()):
            return _SYMBOL
        return _NOTHING  # a function name, an operator sign: no size of its own

    def _group(self, depth: int) -> Size:
        inner = self._sequence(depth + 1)
        if self._peek() in _CLOSERS:
            self._pos += 1
        return inner

    def _root(self, depth: int) -> Size:
        index = _NOTHING
        if self._peek() == "[":
            self._pos += 1
            index = self._group(depth)
        radicand = self._atom(depth + 1)
        if radicand.digits > MAX_RADICAND_DIGITS or _value_bound(index) > MAX_DIGITS:
            return _TOO_BIG
        symbolic = radicand.symbolic or index.symbolic
        return Size(_capped(radicand.digits + index.digits), None, symbolic)


def _literal(token: str) -> Size:
    digits = token.replace(".", "").lstrip("0")
    if len(digits) > MAX_LITERAL_DIGITS:
        return _TOO_BIG
    if "." in token or len(digits) > _EXACT_DIGITS:
        return Size(float(len(digits)))
    return _exact(int(digits or "0"))


def _exact(value: int) -> Size:
    return Size(float(len(str(value))), value if value < 10**_EXACT_DIGITS else None)


def _value_bound(size: Size) -> float:
    """An upper bound on the absolute value itself (capped): exact, or 10^digits."""
    if size.exact is not None:
        return float(size.exact)
    return 10.0 ** min(size.digits, _LOG10_HUGE)


def _power(base: Size, exponent: Size) -> Size:
    symbolic = base.symbolic or exponent.symbolic
    if exponent.symbolic:  # `2^{x}`, `2^{10^{100} x}`: stays a power, nothing is multiplied out
        return Size(max(base.digits, exponent.digits), None, symbolic)
    if base.exact is not None and exponent.exact is not None:
        if base.exact < 2 or exponent.exact * math.log10(base.exact) < _EXACT_DIGITS:
            return _exact(base.exact**exponent.exact)
    if exponent.exact is None and base.digits > MAX_RADICAND_DIGITS:  # maybe a root of it
        return _TOO_BIG
    if base.exact is not None:
        per_unit = math.log10(base.exact) if base.exact >= 2 else 0.0
    else:  # x^n: coefficients of height 1, but sympy's work on it grows with n all the same
        per_unit = max(base.digits, _LOG10_2)
    # Either side alone may be the costly one: `1^{10^{10^{10}}}`, `(10^{10^{100}})^0`.
    digits = max(_value_bound(exponent) * per_unit, exponent.digits, base.digits)
    return Size(_capped(digits), None, symbolic)


def _factorial(argument: Size, double: bool) -> Size:
    if argument.symbolic:
        return argument
    if argument.exact is not None and not double and argument.exact <= _EXACT_FACTORIAL:
        return _exact(math.factorial(argument.exact))
    n = _value_bound(argument)
    return Size(_capped(max(n * math.log10(n) if n >= 2 else 0.0, argument.digits)))


def _binomial(n: Size, k: Size) -> Size:
    if n.symbolic or k.symbolic:
        return Size(_capped(n.digits + k.digits), None, True)
    top = _value_bound(n)
    by_top = top * _LOG10_2  # binom(n, k) <= 2^n
    by_bottom = _value_bound(k) * math.log10(max(top, 2.0))  # binom(n, k) <= n^k
    return Size(_capped(max(min(by_top, by_bottom), n.digits, k.digits)))


def _capped(digits: float) -> float:
    return min(digits, _HUGE)
