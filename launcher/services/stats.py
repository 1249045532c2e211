"""The statistics behind every "better" or "worse" Launcher shows: pure functions, no Django.

- `wilson_interval`: the interval of a success rate. Wilson's score interval, not the textbook
  "p ± 1.96·√(p(1−p)/n)": at the sizes people launch (10–50 runs) and at rates near 0 or 100 %,
  that one gives intervals below 0 or above 1, and a width of zero at 0/10 or 10/10.
- `fisher_exact`: Fisher's exact test of a 2×2 table (successes / failures of two groups). Exact,
  so it stays valid at small counts and rates near 0 or 1, where the chi-square and z tests that
  rely on a normal approximation do not (their rule of thumb — five expected per cell — fails
  for most batches people run). It is conservative, which is the side to err on when the
  question is "may this go to production?".
- `rate_compare`: one rate against another with that test, and a verdict in words.
- `percentile`: linear interpolation between ranks, the same as PostgreSQL's `percentile_cont`,
  so a number computed in Python and one computed in SQL agree.
- `canary_look_alpha`: the significance level of each look at a running canary (see there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Alternative = Literal["two-sided", "less", "greater"]

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no significant difference"

# Two probabilities of a table closer than this are "as likely" (scipy's tolerance): without
# it, rounding in the log-space sums would drop tables exactly as extreme as the observed one.
_RELATIVE_TOLERANCE = 1 + 1e-7


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of `successes` out of `n`, as fractions (0..1).

    With no runs nothing is known: (0.0, 1.0).
    """
    _check_counts(successes, n)
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Clamp the rounding: 0/n must start at exactly 0, n/n end at exactly 1.
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)
    high = 1.0 if successes == n else min(1.0, centre + half_width)
    return (low, high)


def fisher_exact(
    a: int, b: int, c: int, d: int, *, alternative: Alternative = "two-sided"
) -> float:
    """The p-value of Fisher's exact test for the table [[a, b], [c, d]].

    Rows are the two groups, columns successes and failures: `a` successes and `b` failures in
    group 1, `c` and `d` in group 2. "less": is group 1's success rate lower than group 2's?
    "greater": higher? "two-sided": different either way (the sum of every table with the same
    margins that is no more likely than this one).
    """
    for count in (a, b, c, d):
        if count < 0 or count != int(count):
            raise ValueError("Counts must be whole numbers ≥ 0.")
    group_1 = a + b
    successes = a + c
    total = a + b + c + d
    low = max(0, group_1 - (total - successes))
    high = min(group_1, successes)
    if low == high:
        return 1.0  # only one table has these margins: nothing to test

    # Every table's log-probability, each computed once (four lgamma calls a table): a grid
    # cell of a big batch has ~1,000 possible tables, and the two-sided test looks at all of
    # them, so the page's cost is here (the constant term is the same for every table).
    constant = (
        math.lgamma(successes + 1)
        + math.lgamma(total - successes + 1)
        + math.lgamma(group_1 + 1)
        + math.lgamma(total - group_1 + 1)
        - math.lgamma(total + 1)
    )
    failures = total - successes
    log_probabilities = [
        constant
        - math.lgamma(x + 1)
        - math.lgamma(successes - x + 1)
        - math.lgamma(group_1 - x + 1)
        - math.lgamma(failures - group_1 + x + 1)
        for x in range(low, high + 1)
    ]

    def tables(xs) -> list[float]:
        return [log_probabilities[x - low] for x in xs]

    if alternative == "less":
        return _sum_probabilities(tables(range(low, a + 1)))
    if alternative == "greater":
        return _sum_probabilities(tables(range(a, high + 1)))
    if alternative != "two-sided":
        raise ValueError(f"Unknown alternative: {alternative!r}")
    observed = log_probabilities[a - low] + math.log(_RELATIVE_TOLERANCE)
    return _sum_probabilities([lp for lp in log_probabilities if lp <= observed])


@dataclass(frozen=True)
class RateComparison:
    """Group 1's success rate against group 2's."""

    difference: float | None  # rate 1 − rate 2, as a fraction; None when a group has no runs
    p_value: float
    significant: bool
    verdict: str  # "better", "worse" or "no significant difference" (group 1 against group 2)
    test: str = "Fisher's exact test"

    @property
    def difference_points(self) -> float | None:
        """The difference in percentage points (+12.5 for 62.5 % against 50 %)."""
        return None if self.difference is None else self.difference * 100


def rate_compare(
    s1: int,
    n1: int,
    s2: int,
    n2: int,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> RateComparison:
    """Compare `s1`/`n1` with `s2`/`n2` by Fisher's exact test at level `alpha`.

    With "less" only "worse" can come out significant, with "greater" only "better": a
    one-sided test answers one question.
    """
    _check_counts(s1, n1)
    _check_counts(s2, n2)
    if n1 == 0 or n2 == 0:
        return RateComparison(
            difference=None, p_value=1.0, significant=False, verdict=NO_DIFFERENCE
        )
    difference = s1 / n1 - s2 / n2
    p_value = fisher_exact(s1, n1 - s1, s2, n2 - s2, alternative=alternative)
    significant = p_value < alpha and difference != 0
    if alternative == "less":
        significant = significant and difference < 0
    elif alternative == "greater":
        significant = significant and difference > 0
    verdict = (BETTER if difference > 0 else WORSE) if significant else NO_DIFFERENCE
    return RateComparison(
        difference=difference, p_value=p_value, significant=significant, verdict=verdict
    )


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The `q` quantile (0..1) of values sorted ascending, interpolating linearly between ranks
    (PostgreSQL's `percentile_cont`); None for no values."""
    if not 0 <= q <= 1:
        raise ValueError("q must be between 0 and 1.")
    if not sorted_values:
        return None
    position = q * (len(sorted_values) - 1)
    below = math.floor(position)
    above = math.ceil(position)
    fraction = position - below
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * fraction


def canary_look_alpha(look_number: int, *, alpha: float = 0.05) -> float:
    """The significance level of the `look_number`-th look (1, 2, 3 …) at a running canary.

    A canary is evaluated again and again as its runs come in. Testing each time at `alpha`
    would, over many looks, almost surely stop a canary that is no worse at all. Spending the
    error rate instead — look k tests at alpha / 2**k — keeps the chance of any false stop over
    every look together at most alpha / 2 + alpha / 4 + … < alpha (Bonferroni's inequality), so
    the rule stays valid however often it looks, at the price of needing stronger evidence at
    later looks. That makes early, clear failures stop quickly, which is what a canary is for.
    """
    if look_number < 1:
        raise ValueError("Looks are numbered from 1.")
    return alpha / 2**look_number


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError("Need 0 ≤ successes ≤ n.")


def _sum_probabilities(log_probabilities: list[float]) -> float:
    total = math.fsum(math.exp(lp) for lp in log_probabilities)
    return min(1.0, total)
