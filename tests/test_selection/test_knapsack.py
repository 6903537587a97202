import itertools
import math

import numpy as np
import pytest

from mmseg_gearnn.selection import default_granularity, greedy, knapsack


def brute_force(sizes, values, capacity, granularity=1):
    """Best total value over every subset (sizes up, capacity down)."""
    units = [math.ceil(s / granularity) for s in sizes]
    cap = capacity // granularity
    best = 0.0
    for mask in itertools.product((0, 1), repeat=len(sizes)):
        if sum(u for u, m in zip(units, mask) if m) <= cap:
            best = max(best, sum(v for v, m in zip(values, mask) if m))
    return best


def random_instance(rng):
    n = int(rng.integers(1, 11))
    sizes = [int(s) for s in rng.integers(1, 60, n)]
    values = [float(v) for v in np.round(rng.random(n), 3)]
    capacity = int(rng.integers(0, sum(sizes) + 5))
    return sizes, values, capacity


def test_dp_is_optimal_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        sizes, values, capacity = random_instance(rng)
        result = knapsack(sizes, values, capacity)
        expected = brute_force(sizes, values, capacity)
        assert result.total_value == pytest.approx(expected, abs=1e-9)
        assert result.total_size <= capacity
        assert result.total_size == sum(sizes[i] for i in result.indices)
        assert result.total_value == pytest.approx(
            sum(values[i] for i in result.indices)
        )
        assert len(set(result.indices)) == len(result.indices)


def test_quantised_dp_never_exceeds_budget_and_is_optimal_when_quantised():
    rng = np.random.default_rng(1)
    for _ in range(300):
        sizes, values, capacity = random_instance(rng)
        g = int(rng.integers(2, 9))
        result = knapsack(sizes, values, capacity, granularity=g)
        # The true sizes fit the true budget, always.
        assert result.total_size <= capacity
        # Exactly optimal for the quantised problem ...
        assert result.total_value == pytest.approx(
            brute_force(sizes, values, capacity, g), abs=1e-9
        )
        # ... and never better than the true optimum.
        assert result.total_value <= brute_force(sizes, values, capacity)
        assert result.granularity == g


def test_budget_is_respected_exactly_at_the_boundary():
    # Three items that fill the budget to the byte.
    result = knapsack([4, 8, 12], [1.0, 1.0, 1.0], 24)
    assert result.indices == [0, 1, 2]
    assert result.total_size == 24
    # One byte less: one item must go.
    result = knapsack([4, 8, 12], [1.0, 1.0, 1.0], 23)
    assert result.total_size <= 23
    assert len(result.indices) == 2
    # Rounding up to the granularity: 5 bytes take 2 units of 4.
    result = knapsack([5, 5], [1.0, 1.0], 12, granularity=4)
    assert result.indices in ([0], [1])


def test_greedy_is_feasible_and_can_lose_to_dp():
    sizes, values = [6, 5, 5], [7.0, 5.0, 5.0]
    dp = knapsack(sizes, values, 10)
    gr = greedy(sizes, values, 10)
    assert dp.indices == [1, 2] and dp.total_value == 10.0
    assert gr.indices == [0] and gr.total_value == 7.0
    rng = np.random.default_rng(2)
    for _ in range(200):
        sizes, values, capacity = random_instance(rng)
        gr = greedy(sizes, values, capacity)
        assert gr.total_size <= capacity
        assert (
            gr.total_value
            <= knapsack(sizes, values, capacity).total_value + 1e-9
        )


def test_items_of_zero_value_are_never_taken():
    result = knapsack([1, 1, 1], [0.0, 2.0, 0.0], 10)
    assert result.indices == [1]
    assert greedy([1, 1, 1], [0.0, 2.0, 0.0], 10).indices == [1]


def test_default_granularity_bounds_the_table():
    assert default_granularity(1000) == 4
    assert default_granularity(65539) == 4  # 65539 // 4 == 16384
    assert default_granularity(65540) == 8  # 65540 // 4 == 16385
    for capacity in (65536, 65539, 65540, 65541, 10**6, 123456789):
        g = default_granularity(capacity)
        assert g % 4 == 0
        assert capacity // g <= 16384
        # The smallest such multiple of 4.
        assert g == 4 or capacity // (g - 4) > 16384


def test_knapsack_rejects_bad_input():
    with pytest.raises(ValueError, match='differ in length'):
        knapsack([1, 2], [1.0], 5)
    with pytest.raises(ValueError, match='capacity must be >= 0'):
        knapsack([1], [1.0], -1)
    with pytest.raises(ValueError, match='positive integer'):
        knapsack([0], [1.0], 5)
    with pytest.raises(ValueError, match='finite'):
        knapsack([1], [float('nan')], 5)
    with pytest.raises(ValueError, match='granularity'):
        knapsack([1], [1.0], 5, granularity=0)


def test_bn_statistics_are_one_item():
    from mmseg_gearnn.selection.candidates import TensorInfo
    from mmseg_gearnn.selection.solver import knapsack_items, select_tensors

    infos = [
        TensorInfo('conv.weight', 100, 400, 'param', False),
        TensorInfo('bn.weight', 4, 16, 'param', True),
        TensorInfo('bn.running_mean', 4, 16, 'bn_buffer', True),
        TensorInfo('bn.running_var', 4, 16, 'bn_buffer', True),
    ]
    items = knapsack_items(infos)
    assert items == [([0], 400), ([1], 16), ([2, 3], 40)]
    # The mean alone would fit 20 bytes, but never comes without the var.
    scores = {
        'conv.weight': 0.1,
        'bn.weight': 0.2,
        'bn.running_mean': 1.0,
        'bn.running_var': 0.0,
    }
    assert select_tensors(infos, scores, 36).selected == ['bn.weight']
    both = select_tensors(infos, scores, 40).selected
    assert both == ['bn.running_mean', 'bn.running_var']
