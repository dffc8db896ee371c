"""End-to-end: real torch exports scored through ``updlrm.load`` against PyTorch."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import updlrm
from updlrm import InvalidInputError, SparseBatch

from dlrm_models import export_dlrm, make_dlrm, sample_inputs

NUM_TABLES, ROWS = 3, 60

# (variant, exporter): one model per recognised pattern family, both exporters.
CASES = [("bag_list", "ts11"), ("bag_stacked", "ts17"), ("bag_2d", "ts11"), ("emb_sum", "dynamo"),
         ("bag_mean", "dynamo"), ("bag_max", "ts11"), ("bag_psw", "dynamo"), ("bag_ilo", "ts17")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cache: dict = {}

    def get(variant: str, exporter: str, **kw):
        key = (variant, exporter, tuple(sorted(kw.items())))
        if key not in cache:
            model = make_dlrm(variant, NUM_TABLES, ROWS, **kw)
            path = tmp_path_factory.mktemp(f"{variant}_{exporter}") / "model.onnx"
            export_dlrm(model, variant, exporter, path)
            cache[key] = (model, path)
        return cache[key]
    return get


def torch_out(model, args) -> np.ndarray:
    with torch.inference_mode():
        return model(*args).numpy()


@pytest.mark.parametrize("variant,exporter", CASES)
def test_run_matches_pytorch(exported, variant, exporter):
    model, path = exported(variant, exporter)
    with updlrm.load(path) as sess:
        for batch_size, pooling in [(1, (0, 3)), (17, (0, 1)), (8, (50, 60))]:
            args, feeds = sample_inputs(variant, batch_size, pooling, NUM_TABLES, ROWS,
                                        seed=batch_size, exporter=exporter)
            (got,) = sess.run(None, feeds)
            np.testing.assert_allclose(got, torch_out(model, args), atol=1e-5, rtol=0)


@pytest.mark.parametrize("overlap_from", [0, 10**12])
def test_dense_pre_overlapped_or_in_turn(exported, monkeypatch, overlap_from):
    """dense_pre on the worker thread (every batch overlapped) or on the calling thread after the
    lookups (none): the same scores either way."""
    monkeypatch.setattr(updlrm.session, "OVERLAP_MIN_LOOKUPS", overlap_from)
    model, path = exported("bag_list", "ts11")
    args, feeds = sample_inputs("bag_list", 12, (0, 6), NUM_TABLES, ROWS, exporter="ts11")
    with updlrm.load(path) as sess:
        ran_on, dense_pre = [], sess._pre
        sess._pre = lambda values: ran_on.append(threading.get_ident()) or dense_pre(values)
        (got,) = sess.run(None, feeds)
        np.testing.assert_allclose(got, torch_out(model, args), atol=1e-5, rtol=0)
        assert (ran_on == [threading.get_ident()]) == (overlap_from > 0)


@pytest.mark.parametrize("spin_below", [0, 10**12])
def test_dense_post_spins_only_for_small_batches(exported, monkeypatch, spin_below):
    """Batches the kernel pools on the calling thread alone get the dense_post whose workers
    spin, larger ones the one whose workers sleep: the same scores either way."""
    monkeypatch.setattr(updlrm.session, "SERIAL_BELOW_LOOKUPS", spin_below)
    model, path = exported("bag_list", "ts11")
    args, feeds = sample_inputs("bag_list", 12, (0, 6), NUM_TABLES, ROWS, exporter="ts11")
    with updlrm.load(path) as sess:
        used = []
        for name in ("_post", "_post_spinning"):
            runner = getattr(sess, name)
            setattr(sess, name, lambda values, name=name, runner=runner: used.append(name) or runner(values))
        (got,) = sess.run(None, feeds)
        np.testing.assert_allclose(got, torch_out(model, args), atol=1e-5, rtol=0)
        assert used == (["_post_spinning"] if spin_below else ["_post"])


def test_run_int32_feeds_and_output_selection(exported):
    model, path = exported("bag_list", "ts11")
    args, feeds = sample_inputs("bag_list", 9, (0, 4), NUM_TABLES, ROWS, exporter="ts11",
                                index_dtype=np.int32)
    with updlrm.load(path) as sess:
        assert sess.get_outputs() == ["pred"]
        (got,) = sess.run(["pred"], feeds)
        np.testing.assert_allclose(got, torch_out(model, args), atol=1e-5, rtol=0)
        with pytest.raises(InvalidInputError, match="nope"):
            sess.run(["nope"], feeds)


def test_predict_and_score_agree_with_run(exported, tmp_path):
    model, path = exported("bag_list", "ts11")
    args, feeds = sample_inputs("bag_list", 40, (0, 5), NUM_TABLES, ROWS, exporter="ts11")
    expected = torch_out(model, args).reshape(-1)
    offsets = [feeds[f"offsets_{k}"] for k in range(NUM_TABLES)]
    indices = [feeds[f"indices_{k}"] for k in range(NUM_TABLES)]
    sparse = SparseBatch.from_jagged(indices, offsets)
    with updlrm.load(path) as sess:
        np.testing.assert_allclose(sess.predict(feeds["dense_x"], sparse).reshape(-1), expected, atol=1e-5)
        # arrays in memory, several batch sizes (the last batch is partial)
        np.testing.assert_allclose(sess.score((feeds["dense_x"], sparse), batch_size=7), expected, atol=1e-5)
        # a .npz file and a folder of .npy files, written to .npy and to text
        store = {"dense": feeds["dense_x"]}
        for k in range(NUM_TABLES):
            store[f"indices_{k}"] = indices[k]
            store[f"offsets_{k}"] = np.append(offsets[k], len(indices[k]))
        np.savez(tmp_path / "s.npz", **store)
        folder = tmp_path / "npy"
        folder.mkdir()
        for name, arr in store.items():
            np.save(folder / f"{name}.npy", arr)
        out = sess.score(tmp_path / "s.npz", batch_size=16, output=tmp_path / "o.npy", progress=False)
        np.testing.assert_allclose(np.load(out).reshape(-1), expected, atol=1e-5)
        out = sess.score(folder, batch_size=64, output=tmp_path / "o.txt", progress=False)
        np.testing.assert_allclose(np.loadtxt(out), expected, atol=1e-5)
        stats = sess.stats()
        assert stats.samples >= 3 * 40 and stats.measured_s["lookup"] > 0


def test_extra_dense_input_and_cat_interaction(exported):
    model, path = exported("bag_list", "dynamo", interaction="cat", extra_dense=3)
    args, feeds = sample_inputs("bag_list", 11, (0, 4), NUM_TABLES, ROWS, exporter="dynamo", extra_dense=3)
    with updlrm.load(path) as sess:
        assert {i.name for i in sess.dense_inputs} == {"dense_x", "dense_y"}
        (got,) = sess.run(None, feeds)
        np.testing.assert_allclose(got, torch_out(model, args), atol=1e-5, rtol=0)


def test_feed_errors_name_the_input(exported):
    _, path = exported("bag_list", "ts11")
    _, feeds = sample_inputs("bag_list", 5, (1, 3), NUM_TABLES, ROWS, exporter="ts11")
    with updlrm.load(path) as sess:
        with pytest.raises(InvalidInputError, match="missing input.*offsets_1"):
            sess.run(None, {k: v for k, v in feeds.items() if k != "offsets_1"})
        with pytest.raises(InvalidInputError, match="unknown input.*bogus"):
            sess.run(None, {**feeds, "bogus": feeds["dense_x"]})
        with pytest.raises(InvalidInputError, match="dense_x.*float64"):
            sess.run(None, {**feeds, "dense_x": feeds["dense_x"].astype(np.float64)})
        with pytest.raises(InvalidInputError, match="dense_x.*axis 1"):
            sess.run(None, {**feeds, "dense_x": feeds["dense_x"][:, :2].copy()})
        with pytest.raises(InvalidInputError, match="dense_x.*3 samples"):
            sess.run(None, {**feeds, "dense_x": feeds["dense_x"][:3].copy()})
        bad = feeds["indices_2"].copy()
        bad[-1] = ROWS + 14 + 5  # table 2 has ROWS + 14 rows
        with pytest.raises(InvalidInputError, match=str(ROWS + 19)):
            sess.run(None, {**feeds, "indices_2": bad})


def test_nonfinite_dense_policy(exported, caplog):
    model, path = exported("bag_list", "ts11")
    args, feeds = sample_inputs("bag_list", 6, (1, 3), NUM_TABLES, ROWS, exporter="ts11")
    dense = feeds["dense_x"].copy()
    dense[4, 2] = np.nan
    nan_feeds = {**feeds, "dense_x": dense}
    with updlrm.load(path) as sess:
        with pytest.raises(InvalidInputError, match=r"dense_x.*nan at sample 4"):
            sess.run(None, nan_feeds)
    with updlrm.load(path, nonfinite="warn") as sess:
        (got,) = sess.run(None, nan_feeds)
        assert "non-finite" in caplog.text and np.isnan(got[4]).all() and np.isfinite(np.delete(got, 4)).all()
    with pytest.raises(ValueError, match="nonfinite"):
        updlrm.load(path, nonfinite="ignore")


def test_criteo_tsv_scoring(tmp_path):
    """A 13-dense/26-table model scores a Criteo-format file like the reference reader parses it."""
    from updlrm.datasets import CriteoTsvSamples

    rng = np.random.default_rng(1)
    tables = [updlrm.EmbeddingTable(f"t{k}", rng.standard_normal((5 + k, 4)).astype(np.float32))
              for k in range(26)]
    lines = ["1\t" + "\t".join(["3", "", "-2"] + ["0"] * 10) + "\t" + "\t".join(["a1"] + [""] * 24 + ["ff"]),
             "0\t" + "\t".join(["1"] * 13) + "\t" + "\t".join(["0"] * 26)]
    (tmp_path / "d.tsv").write_text("\n".join(lines) + "\n")
    chunks = list(CriteoTsvSamples(tmp_path / "d.tsv", "dense_x", 13, tables).chunks(1))
    assert [c.size for c in chunks] == [1, 1]
    first = chunks[0]
    np.testing.assert_allclose(first.dense["dense_x"][0, :3], np.log1p([3, 0, 0]).astype(np.float32))
    assert first.labels[0] == 1
    assert first.sparse.indices[0][0] == 0xA1 % 5 and first.sparse.indices[25][0] == 0xFF % 30
    (tmp_path / "bad.tsv").write_text("1\t2\n")
    with pytest.raises(InvalidInputError, match="bad.tsv:1: expected 40"):
        list(CriteoTsvSamples(tmp_path / "bad.tsv", "dense_x", 13, tables).chunks(4))


class AsyncCpuBackend:
    """A CPU backend with ``submit`` (pools on a worker thread), to drive the pipelined score path."""

    name = "async-cpu"

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor
        from updlrm.cpu_backend import CpuBackend
        self.inner = CpuBackend(threads=1)
        self.pool = ThreadPoolExecutor(1)
        self.submitted = 0

    def load(self, tables, *, profile=None):
        self.inner.load(tables, profile=profile)

    def lookup(self, batch):
        return self.inner.lookup(batch)

    def submit(self, batch):
        self.submitted += 1
        return self.pool.submit(self.inner.lookup, batch)

    def stats(self):
        return self.inner.stats()

    def close(self):
        self.closed = True


def test_score_pipelines_with_async_backend(exported):
    model, path = exported("bag_list", "ts11")
    args, feeds = sample_inputs("bag_list", 50, (0, 5), NUM_TABLES, ROWS, exporter="ts11")
    sparse = SparseBatch.from_jagged([feeds[f"indices_{k}"] for k in range(NUM_TABLES)],
                                     [feeds[f"offsets_{k}"] for k in range(NUM_TABLES)])
    backend = AsyncCpuBackend()
    with updlrm.load(path, backend=backend) as sess:
        got = sess.score((feeds["dense_x"], sparse), batch_size=8, progress=False)
    assert backend.submitted == 7  # 50 samples in batches of 8
    assert backend.closed  # leaving the session released the backend
    np.testing.assert_allclose(got, torch_out(model, args).reshape(-1), atol=1e-5, rtol=0)
