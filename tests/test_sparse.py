"""SparseBatch: construction, normalisation and validation messages."""
from __future__ import annotations

import numpy as np
import pytest

from updlrm.errors import InvalidInputError
from updlrm.sparse import SparseBatch
from updlrm.tables import EmbeddingTable


def tables(*rows, weighted=()):
    return [EmbeddingTable(f"cat_{k}", np.zeros((r, 4), np.float32), weighted=k in weighted)
            for k, r in enumerate(rows)]


# ---------------------------------------------------------------- construction
def test_from_jagged_appends_the_last_offset():
    batch = SparseBatch.from_jagged([[1, 2, 3], np.array([4], np.int32)], [[0, 2], np.array([0, 1], np.int32)])
    assert batch.num_tables == 2 and batch.batch_size == 2 and batch.num_lookups == 4
    np.testing.assert_array_equal(batch.offsets[0], [0, 2, 3])
    np.testing.assert_array_equal(batch.offsets[1], [0, 1, 1])
    assert batch.indices[1].dtype == np.int32 and batch.offsets[1].dtype == np.int32
    assert batch.weights == (None, None)


def test_from_jagged_include_last_offset_keeps_offsets_and_indices_without_copy():
    idx = np.array([5, 6, 7], np.int64)
    off = np.array([0, 1, 3], np.int64)
    batch = SparseBatch.from_jagged([idx], [off], include_last_offset=True)
    assert batch.indices[0] is idx and batch.offsets[0] is off and batch.batch_size == 2


def test_from_jagged_stacked_arrays():
    idx = np.arange(12).reshape(3, 4)
    off = np.array([[0, 1], [0, 4], [0, 0]])
    batch = SparseBatch.from_jagged(idx, off, weights=np.ones((3, 4)))
    assert batch.num_tables == 3 and batch.batch_size == 2
    np.testing.assert_array_equal(batch.indices[2], [8, 9, 10, 11])
    np.testing.assert_array_equal(batch.offsets[2], [0, 0, 4])
    assert all(w.dtype == np.float32 for w in batch.weights)


def test_from_fixed_flattens_without_copy():
    bags = np.arange(12, dtype=np.int32).reshape(4, 3)
    batch = SparseBatch.from_fixed([bags, np.zeros((4, 0), np.int64)])
    assert np.shares_memory(batch.indices[0], bags)
    np.testing.assert_array_equal(batch.offsets[0], [0, 3, 6, 9, 12])
    np.testing.assert_array_equal(batch.offsets[1], [0, 0, 0, 0, 0])
    assert batch.offsets[0].dtype == np.int32 and batch.batch_size == 4


def test_from_fixed_weights_and_stacked_3d():
    bags = np.arange(24).reshape(2, 4, 3)
    w = np.linspace(0, 1, 24).reshape(2, 4, 3)
    batch = SparseBatch.from_fixed(bags, [w[0], None])
    np.testing.assert_allclose(batch.weights[0], w[0].ravel().astype(np.float32))
    assert batch.weights[1] is None
    with pytest.raises(InvalidInputError, match=r"table #0: weights shape \(4, 2\)"):
        SparseBatch.from_fixed(bags, [w[0][:, :2], None])


@pytest.mark.parametrize("dtype, expected", [(np.int8, np.int32), (np.int16, np.int32), (np.uint16, np.int32),
                                              (np.uint32, np.int64), (np.int32, np.int32), (np.int64, np.int64)])
def test_integer_indices_widen_losslessly(dtype, expected):
    batch = SparseBatch.from_jagged([np.array([1, 2], dtype)], [np.array([0], dtype)])
    assert batch.indices[0].dtype == expected and batch.offsets[0].dtype == expected


def test_int64_offsets_with_int32_indices_are_narrowed_only_when_they_fit():
    batch = SparseBatch.from_jagged([np.array([1, 2], np.int32)], [np.array([0, 1], np.int64)])
    assert batch.offsets[0].dtype == np.int32
    batch = SparseBatch.from_jagged([np.array([1, 2], np.int32)], [np.array([0, 2**40], np.int64)])
    assert batch.indices[0].dtype == np.int64 and batch.offsets[0][1] == 2**40


@pytest.mark.parametrize("bad", [np.array([1.0, 2.0]), np.array([True, False]), np.array([1, 2], np.uint64),
                                 np.array(["a", "b"])])
def test_non_integer_indices_are_rejected(bad):
    with pytest.raises(InvalidInputError, match="table #0: indices must be int32 or int64"):
        SparseBatch.from_jagged([bad], [[0]])


def test_float_offsets_and_2d_indices_are_rejected():
    with pytest.raises(InvalidInputError, match="table #1: offsets must be int32 or int64"):
        SparseBatch.from_jagged([[1], [2]], [[0], [0.0]])
    with pytest.raises(InvalidInputError, match=r"table #0: indices must be 1-D, got shape \(2, 2\)"):
        SparseBatch.from_jagged([np.ones((2, 2), np.int64)], [[0]])


def test_non_float_weights_are_rejected():
    with pytest.raises(InvalidInputError, match="table #0: per-sample weights must be floating point, got int64"):
        SparseBatch.from_jagged([[1, 2]], [[0]], weights=[np.array([1, 2])])


def test_single_flat_array_is_not_mistaken_for_tables():
    with pytest.raises(InvalidInputError, match="stacked 2-D"):
        SparseBatch.from_jagged(np.array([1, 2, 3]), np.array([0, 1]))


def test_mismatched_table_counts():
    with pytest.raises(InvalidInputError, match="indices for 2 tables but offsets for 1"):
        SparseBatch.from_jagged([[1], [2]], [[0]])


# ---------------------------------------------------------------- validation
def valid_batch():
    return SparseBatch.from_jagged([[0, 9, 3], [1, 1]], [[0, 1], [0, 2]], weights=[None, [0.5, 2.0]])


def test_valid_batch_passes_and_is_remembered():
    batch = valid_batch()
    tabs = tables(10, 2, weighted={1})
    assert not batch.is_validated_for(tabs)
    batch.validate(tabs)
    assert batch.is_validated_for(tabs)
    assert not batch.is_validated_for(tables(9, 2, weighted={1}))


def test_wrong_table_count():
    with pytest.raises(InvalidInputError, match="bags for 2 tables, the model has 3"):
        valid_batch().validate(tables(10, 2, 2, weighted={1}))


def test_index_out_of_range_names_table_bag_and_value():
    batch = SparseBatch.from_jagged([[0, 9, 3], [1, 1]], [[0, 1], [0, 2]], weights=[None, [0.5, 2.0]])
    with pytest.raises(InvalidInputError,
                       match=r"table 'cat_0' \(#0\): bag 1 has index 9 \(position 1 in indices\), out of range \[0, 9\)"):
        batch.validate(tables(9, 2, weighted={1}))


def test_negative_index_names_table_bag_and_value():
    batch = SparseBatch.from_jagged([[0, 1, 2], np.array([1, 0, 0, -4], np.int32)], [[0, 1, 2], [0, 0, 3]])
    with pytest.raises(InvalidInputError, match=r"table 'cat_1' \(#1\): bag 2 has index -4"):
        batch.validate(tables(5, 5))


def test_bad_index_found_deep_in_a_large_batch():
    idx = np.random.default_rng(0).integers(0, 1000, 50_000)
    idx[41_234] = 1000
    batch = SparseBatch.from_fixed([idx.reshape(5000, 10)])
    with pytest.raises(InvalidInputError, match=r"bag 4123 has index 1000 \(position 41234"):
        batch.validate(tables(1000))


def test_first_offset_must_be_zero():
    batch = SparseBatch([np.array([1, 2])], [np.array([1, 2, 2])])
    with pytest.raises(InvalidInputError, match=r"table 'cat_0' \(#0\): bag 0 starts at offset 1"):
        batch.validate(tables(5))


def test_decreasing_offsets_name_position_and_values():
    batch = SparseBatch.from_jagged([[1, 2, 3]], [[0, 2, 1]])
    with pytest.raises(InvalidInputError,
                       match=r"table 'cat_0' \(#0\): offsets decrease at position 2 \(2 -> 1\), so bag 1"):
        batch.validate(tables(5))


def test_offset_beyond_indices_names_bag_and_value():
    batch = SparseBatch.from_jagged([[1, 2, 3]], [[0, 7]])
    with pytest.raises(InvalidInputError, match=r"table 'cat_0' \(#0\): bag 1 starts at offset 7 \(position 1\)"):
        batch.validate(tables(5))


def test_last_offset_must_equal_number_of_indices():
    batch = SparseBatch.from_jagged([[1, 2, 3]], [[0, 2]], include_last_offset=True)
    with pytest.raises(InvalidInputError, match=r"last offset \(position 1\) is 2, must equal len\(indices\) = 3"):
        batch.validate(tables(5))


def test_tables_must_share_the_batch_size():
    batch = SparseBatch.from_jagged([[1], [1, 2]], [[0], [0, 1]])
    with pytest.raises(InvalidInputError, match=r"table 'cat_1' \(#1\): has 2 bags, table #0 has 1"):
        batch.validate(tables(5, 5))


def test_weights_required_for_weighted_tables_only():
    with pytest.raises(InvalidInputError, match=r"table 'cat_1' \(#1\): table is weighted but the batch has no"):
        SparseBatch.from_jagged([[1], [1]], [[0], [0]]).validate(tables(5, 5, weighted={1}))
    with pytest.raises(InvalidInputError, match=r"table 'cat_0' \(#0\): table is not weighted"):
        SparseBatch.from_jagged([[1], [1]], [[0], [0]], weights=[[1.0], None]).validate(tables(5, 5))


def test_weights_length_must_match_indices():
    batch = SparseBatch.from_jagged([[1, 2]], [[0]], weights=[[1.0]])
    with pytest.raises(InvalidInputError, match=r"table 'cat_0' \(#0\): 1 per-sample weights for 2 indices"):
        batch.validate(tables(5, weighted={0}))


def test_hand_built_batch_with_wrong_dtypes_or_shapes():
    with pytest.raises(InvalidInputError, match=r"table 'cat_0' \(#0\): indices must be a 1-D int32 or int64 array, got float64"):
        SparseBatch([np.array([1.0])], [np.array([0, 1])]).validate(tables(5))
    with pytest.raises(InvalidInputError, match=r"offsets dtype int32 differs from indices dtype int64"):
        SparseBatch([np.array([1])], [np.array([0, 1], np.int32)]).validate(tables(5))
    with pytest.raises(InvalidInputError, match=r"offsets are empty"):
        SparseBatch([np.array([1])], [np.array([], np.int64)]).validate(tables(5))
    with pytest.raises(InvalidInputError, match=r"per-sample weights must be a contiguous 1-D float32 array, got float64"):
        SparseBatch([np.array([1])], [np.array([0, 1])], [np.array([1.0])]).validate(tables(5, weighted={0}))
    with pytest.raises(InvalidInputError, match=r"offsets must be a 1-D int32 or int64 array, got float64 array of shape \(2,\)"):
        SparseBatch([np.array([1])], [np.array([0.0, 1.0])]).validate(tables(5))
    with pytest.raises(InvalidInputError, match=r"offsets must be a 1-D int32 or int64 array, got list"):
        SparseBatch([np.array([1])], [[0, 1]]).validate(tables(5))
    with pytest.raises(InvalidInputError, match=r"offsets must be a 1-D int32 or int64 array, got >i8 array"):
        SparseBatch([np.array([1])], [np.array([0, 1], ">i8")]).validate(tables(5))
    with pytest.raises(InvalidInputError, match=r"table 'cat_0' \(#0\): indices must be contiguous"):
        SparseBatch([np.array([1, 9, 2, 9])[::2]], [np.array([0, 1, 2])]).validate(tables(5))
    with pytest.raises(InvalidInputError, match=r"table 'cat_0' \(#0\): offsets must be contiguous"):
        SparseBatch([np.array([1, 2])], [np.array([0, 9, 1, 9, 2])[::2]]).validate(tables(5))


def test_every_problem_the_check_reports_has_a_message():
    from updlrm import _embedding_bag as kernel
    from updlrm.sparse import _PROBLEM_TEXT

    assert set(kernel.BAG_PROBLEMS) == set(_PROBLEM_TEXT)


def test_range_and_order_scans_at_the_edges():
    from updlrm import _embedding_bag as kernel
    from updlrm.sparse import _INDEX_DTYPES

    def check(indices, rows, offsets=None):
        """check_bags on one table whose bags are one lookup each unless offsets say otherwise."""
        if offsets is None:
            offsets = np.arange(indices.size + 1, dtype=indices.dtype)
        return kernel.check_bags((indices,), (offsets,), (None,), ((rows, False),),
                                 offsets.size - 1, _INDEX_DTYPES)

    assert check(np.array([], np.int32), 3) is None
    # int32 indices against a table with more than 2^31 rows: only negatives are out of range.
    assert check(np.array([2**31 - 1, 0], np.int32), 2**40) is None
    assert check(np.array([5, -1], np.int32), 2**40) == (0, "index_range", 1)
    big = np.zeros(5000, np.int64)
    big[4321] = 2**33
    assert check(big, 2**33) == (0, "index_range", 4321)
    assert check(big, 2**33 + 1) is None
    steps = np.arange(3000, dtype=np.int32)
    steps[2500] = 0
    assert check(np.zeros(2999, np.int32), 1, steps) == (0, "offset_decrease", 2499)
    steps[2500] = 3000  # a jump past the end is reported as such, not as the decrease after it
    assert check(np.zeros(2999, np.int32), 1, steps) == (0, "offset_beyond", 2500)
