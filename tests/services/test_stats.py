"""The statistics, against published values (textbook examples; R's fisher.test and
binom::binom.wilson give the same figures)."""

from fractions import Fraction
from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launcher.services.stats import (
    BETTER,
    NO_DIFFERENCE,
    WORSE,
    canary_look_alpha,
    fisher_exact,
    percentile,
    rate_compare,
    wilson_interval,
)


class TestWilsonInterval:
    def test_seven_out_of_ten(self):
        low, high = wilson_interval(7, 10)
        assert low == pytest.approx(0.3968, abs=1e-4)
        assert high == pytest.approx(0.8922, abs=1e-4)

    def test_none_out_of_ten_starts_at_zero_and_is_not_empty(self):
        low, high = wilson_interval(0, 10)
        assert low == 0.0
        assert high == pytest.approx(0.2775, abs=1e-4)

    def test_all_out_of_ten_ends_at_one(self):
        low, high = wilson_interval(10, 10)
        assert high == 1.0
        assert low == pytest.approx(0.7225, abs=1e-4)

    def test_no_runs_means_nothing_is_known(self):
        assert wilson_interval(0, 0) == (0.0, 1.0)

    def test_a_wider_confidence_gives_a_wider_interval(self):
        low_95, high_95 = wilson_interval(5, 20)
        low_99, high_99 = wilson_interval(5, 20, confidence=0.99)
        assert low_99 < low_95 and high_99 > high_95

    def test_it_refuses_impossible_counts(self):
        with pytest.raises(ValueError):
            wilson_interval(11, 10)


class TestFisherExact:
    # Fisher's lady tasting tea: 3 of 4 cups right each way.
    def test_tea_tasting_one_sided(self):
        assert fisher_exact(3, 1, 1, 3, alternative="greater") == pytest.approx(17 / 70)

    def test_tea_tasting_two_sided(self):
        assert fisher_exact(3, 1, 1, 3) == pytest.approx(34 / 70)

    def test_a_lopsided_table(self):
        # The example of the Wikipedia article on Fisher's exact test.
        assert fisher_exact(1, 9, 11, 3) == pytest.approx(0.002759, abs=1e-6)
        assert fisher_exact(1, 9, 11, 3, alternative="less") == pytest.approx(0.001380, abs=1e-6)
        assert fisher_exact(1, 9, 11, 3, alternative="greater") == pytest.approx(0.99996, abs=1e-5)

    def test_equal_groups_are_not_different(self):
        assert fisher_exact(5, 5, 5, 5) == pytest.approx(1.0)

    def test_one_possible_table_gives_one(self):
        assert fisher_exact(0, 0, 3, 4) == 1.0

    def test_large_counts_stay_finite(self):
        p = fisher_exact(5000, 5000, 4800, 5200)
        assert 0 < p < 0.01

    @given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
    def test_it_equals_the_exact_sum_of_table_probabilities(self, a, b, c, d):
        # Every table with the same margins, as exact fractions: the definition of the test.
        group_1, successes, total = a + b, a + c, a + b + c + d
        low, high = max(0, group_1 - (total - successes)), min(group_1, successes)
        probability = {
            x: Fraction(
                comb(successes, x) * comb(total - successes, group_1 - x), comb(total, group_1)
            )
            for x in range(low, high + 1)
        }
        as_likely = probability[a] * Fraction(1 + 10**-7)
        expected = {
            "less": sum(p for x, p in probability.items() if x <= a),
            "greater": sum(p for x, p in probability.items() if x >= a),
            "two-sided": sum(p for p in probability.values() if p <= as_likely),
        }
        for alternative, exact in expected.items():
            wanted = 1.0 if low == high else min(1.0, float(exact))
            assert fisher_exact(a, b, c, d, alternative=alternative) == pytest.approx(
                wanted, rel=1e-9, abs=1e-300
            )

    def test_it_refuses_negative_counts_and_unknown_alternatives(self):
        with pytest.raises(ValueError):
            fisher_exact(-1, 2, 3, 4)
        with pytest.raises(ValueError):
            fisher_exact(1, 2, 3, 4, alternative="sideways")


class TestRateCompare:
    def test_seven_of_ten_is_not_shown_better_than_five_of_ten(self):
        result = rate_compare(7, 10, 5, 10)
        assert result.difference == pytest.approx(0.2)
        assert result.difference_points == pytest.approx(20)
        assert result.significant is False
        assert result.verdict == NO_DIFFERENCE
        assert result.p_value == pytest.approx(0.6499, abs=1e-4)

    def test_a_clear_difference_is_better_or_worse(self):
        assert rate_compare(19, 20, 5, 20).verdict == BETTER
        assert rate_compare(5, 20, 19, 20).verdict == WORSE

    def test_one_sided_worse_only_calls_worse(self):
        assert rate_compare(19, 20, 5, 20, alternative="less").significant is False
        worse = rate_compare(5, 20, 19, 20, alternative="less")
        assert worse.significant and worse.verdict == WORSE

    def test_a_group_without_runs_has_no_difference(self):
        result = rate_compare(0, 0, 5, 10)
        assert result.difference is None and not result.significant


class TestPercentile:
    def test_it_interpolates_like_percentile_cont(self):
        assert percentile([1, 2, 3, 4], 0.5) == 2.5
        assert percentile([1, 2, 3, 4], 0.9) == pytest.approx(3.7)
        assert percentile([10], 0.9) == 10

    def test_no_values_give_none(self):
        assert percentile([], 0.5) is None


def test_canary_looks_spend_less_than_alpha_in_all():
    levels = [canary_look_alpha(k) for k in range(1, 200)]
    assert levels[0] == 0.025
    assert levels == sorted(levels, reverse=True)
    assert sum(levels) <= 0.05
