from experiments.lmcor_lengths import cut_share, quantile, smallest_cap


def test_smallest_cap_cuts_at_most_one_percent_of_lengths():
    lengths = [10] * 98 + [40, 70]  # two long outliers of 100: a cap must keep 99 of them
    assert smallest_cap(lengths) == 48  # 48 cuts only the 70 (1%); 32 would cut both (2%)
    assert cut_share(lengths, 48) == 0.01 and cut_share(lengths, 32) == 0.02


def test_quantile_is_nearest_rank():
    assert quantile([5, 1, 3, 2, 4], 0.5) == 3 and quantile([5, 1, 3, 2, 4], 0.99) == 5
