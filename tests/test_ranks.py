"""nads.ranks.spearman is scipy's Spearman correlation, to the bit, on what the stages give it."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from nads.ranks import average_ranks, spearman


def samples():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 257):
        yield rng.normal(size=n), rng.normal(size=n)  # no ties
        yield rng.integers(0, 4, n), rng.normal(size=n)  # many ties, integers
        yield np.arange(n), np.round(rng.uniform(0, 8, n), 1)  # an index against a rounded frequency
        yield rng.integers(0, 2, n).astype(float), rng.integers(0, 3, n)  # ties on both sides


@pytest.mark.parametrize("a,b", list(samples()))
def test_spearman_is_scipys_bit_for_bit(a, b):
    expected = spearmanr(a, b).statistic
    got = spearman(a, b)
    assert np.isnan(got) if np.isnan(expected) else got == expected, (got, expected)


def test_ties_share_their_mean_rank():
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_constant_or_nan_samples_have_no_correlation():
    assert np.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(spearman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
    assert spearman([1, 2, 3], [3, 2, 1]) == -1.0
    with pytest.raises(ValueError, match="3 and 2"):
        spearman([1, 2, 3], [1, 2])
