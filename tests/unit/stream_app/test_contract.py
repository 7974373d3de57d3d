"""EventContract's helpers (the contract's behaviour on events: test_live_contract.py)."""

from __future__ import annotations

import numpy as np

from stream_app.contract import _index_of


def test_index_of_gives_each_values_position_in_any_number_of_distinct_values():
    for n_distinct in (1, 3, 256, 257, 1000):
        order = [f"v{i}" for i in range(n_distinct)]
        rng = np.random.default_rng(n_distinct)
        picks = rng.integers(0, n_distinct, size=700)
        values = tuple(order[i] for i in picks)
        index = _index_of(values, order)
        assert index.dtype == (np.uint8 if n_distinct <= 256 else np.intp)
        np.testing.assert_array_equal(index, picks)
        np.testing.assert_array_equal(_index_of(values[:1], order), picks[:1])  # one value: not a tuple
        assert _index_of((), order).shape == (0,)
