"""Train a small DLRM on MovieLens-100k, export it with both torch exporters, score it with updlrm.

    python examples/movielens_dlrm.py [--epochs 4] [--data recbole-1.2.1-py3-none-any.whl]
                                      [--workdir /tmp/updlrm-movielens]

What it does, as a user would:
1. loads MovieLens-100k as a CTR task (``updlrm.datasets.load_movielens_100k``: rating >= 4 is a
   click; user, item, gender, occupation, age bucket, the item's genres and the user's rating
   history as embedding bags; the last 10 ratings of each user held out). Without ``--data`` the
   data comes from RecBole's wheel on PyPI (downloaded once with pip, hash-checked, cached);
2. trains a small DLRM with PyTorch on the CPU (one ``nn.EmbeddingBag`` per feature: sum over
   the one-hot ones, mean over the multi-hot genres and history);
3. exports it twice, with the TorchScript exporter (``dynamo=False``, opset 17) and the dynamo
   exporter (``dynamo=True``), both with a dynamic batch and dynamic bag lengths;
4. loads each file with ``updlrm.load`` (CPU backend), scores the held-out split with
   ``Session.score`` and prints the AUC next to PyTorch's — they must agree to 1e-6, else the
   script exits with status 1;
5. times one batch (median of ``--repeats`` runs, at each of ``--batch-sizes``) for updlrm, PyTorch
   eager and onnxruntime on each exported file.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

import updlrm
from updlrm.datasets import SampleChunk, load_movielens_100k
from updlrm.metrics import roc_auc

from criteo_dlrm import dot_interaction, mlp

AUC_TOLERANCE = 1e-6


MULTI_HOT = ("genres", "history")


class MovieLensDLRM(nn.Module):
    """Bottom MLP over the dense features, one EmbeddingBag per table, dot interaction, top MLP."""

    def __init__(self, tables: tuple[str, ...], rows: tuple[int, ...], num_dense: int,
                 dim: int = 16) -> None:
        super().__init__()
        self.bot = mlp([num_dense, 32, dim], nn.ReLU())
        # mean over the multi-hot bags (a long history must not outweigh the one-hot features)
        self.emb = nn.ModuleList(nn.EmbeddingBag(n, dim, mode="mean" if name in MULTI_HOT else "sum")
                                 for name, n in zip(tables, rows))
        for e in self.emb:
            nn.init.normal_(e.weight, 0.0, 0.05)
        t = len(rows) + 1
        self.li, self.lj = torch.tril_indices(t, t, offset=-1)
        self.top = mlp([dim + t * (t - 1) // 2, 64, 1], nn.Sigmoid())

    def forward(self, dense_x: torch.Tensor, ls_o: list[torch.Tensor],
                ls_i: list[torch.Tensor]) -> torch.Tensor:
        x = self.bot(dense_x)
        ly = [e(ls_i[k], ls_o[k]) for k, e in enumerate(self.emb)]
        return self.top(dot_interaction(x, ly, self.li, self.lj))


def torch_args(chunk: SampleChunk, dense_input: str) -> tuple:
    """PyTorch forward arguments of a chunk: bag starts (B offsets, no end) and indices per table."""
    sp = chunk.sparse
    return (torch.from_numpy(chunk.dense[dense_input]),
            [torch.from_numpy(o[:-1].astype(np.int64)) for o in sp.offsets],
            [torch.from_numpy(i.astype(np.int64)) for i in sp.indices])


def ort_feeds(session: ort.InferenceSession, args: tuple) -> dict[str, np.ndarray]:
    """onnxruntime feeds in the exported graph's input order (dense, offsets..., indices...)."""
    dense, offsets, indices = args
    arrays = [dense.numpy()] + [o.numpy() for o in offsets] + [i.numpy() for i in indices]
    return {i.name: a for i, a in zip(session.get_inputs(), arrays)}


def train(model: MovieLensDLRM, data, epochs: int, batch_size: int, lr: float) -> None:
    samples = data.train
    rng = np.random.default_rng(0)
    loss_fn = nn.BCELoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # Shuffle whole mini-batches of the (user, time)-ordered split: every sample stays a plain
    # slice, so no bag has to be re-gathered per step.
    chunks = list(samples.chunks(batch_size))
    for epoch in range(epochs):
        model.train()
        t, total = time.perf_counter(), 0.0
        for k in rng.permutation(len(chunks)):
            chunk = chunks[k]
            opt.zero_grad()
            loss = loss_fn(model(*torch_args(chunk, data.dense_input)).reshape(-1),
                           torch.from_numpy(chunk.labels))
            loss.backward()
            opt.step()
            total += float(loss.detach()) * chunk.size
        print(f"epoch {epoch + 1}/{epochs}: train log-loss {total / samples.num_samples:.4f} "
              f"({time.perf_counter() - t:.1f} s)")
    model.eval()


def export_both(model: MovieLensDLRM, example: tuple, workdir: Path) -> dict[str, Path]:
    """The model as TorchScript-exported and dynamo-exported ONNX files, dynamic batch and bags."""
    num_tables = len(example[1])
    ts_path, dyn_path = workdir / "movielens_dlrm_ts.onnx", workdir / "movielens_dlrm_dynamo.onnx"
    names = (["dense_x"] + [f"offsets_{k}" for k in range(num_tables)]
             + [f"indices_{k}" for k in range(num_tables)])
    axes = {"dense_x": {0: "batch"}, "pred": {0: "batch"}}
    axes.update({n: {0: f"n_{n}"} for n in names[1:]})
    batch = torch.export.Dim("batch", min=1)
    dynamic_shapes = ({0: batch}, [{0: batch} for _ in range(num_tables)],
                      [{0: torch.export.Dim(f"nnz_{k}", min=1)} for k in range(num_tables)])
    # Both exporters warn (deprecation, interaction indexing) and the dynamo one logs its graph
    # passes; the files are checked below by comparing their scores with PyTorch's.
    for name in ("torch.onnx", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(ts_path), dynamo=False, opset_version=17,
                          input_names=names, output_names=["pred"], dynamic_axes=axes)
        # No input_names here: torchlib names internal values offsets_<n>, which would collide.
        torch.onnx.export(model, example, str(dyn_path), dynamo=True, dynamic_shapes=dynamic_shapes,
                          verbose=False)
    return {"torchscript": ts_path, "dynamo": dyn_path}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="RecBole wheel or folder with ml-100k.{inter,user,item} (default: download)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="default $UPDLRM_CACHE or ~/.cache/updlrm")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/updlrm-movielens"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--history-cap", type=int, default=50)
    ap.add_argument("--batch-sizes", default="1,256,4096", help="comma-separated, for the timings")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per engine and batch size")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t = time.perf_counter()
    data = load_movielens_100k(args.data, cache_dir=args.cache_dir, history_cap=args.history_cap)
    test = data.test
    print(f"MovieLens-100k: {data.train.num_samples:,} train / {test.num_samples:,} test samples, "
          f"tables {data.table_rows()} ({time.perf_counter() - t:.2f} s)")

    model = MovieLensDLRM(data.tables, data.rows, len(data.dense_features), args.dim)
    t = time.perf_counter()
    train(model, data, args.epochs, args.train_batch, args.lr)
    print(f"trained in {time.perf_counter() - t:.1f} s")

    whole_test = next(test.chunks(test.num_samples))
    with torch.inference_mode():
        torch_scores = model(*torch_args(whole_test, data.dense_input)).numpy().reshape(-1)
    auc_torch = roc_auc(test.labels, torch_scores)
    print(f"test AUC, PyTorch:            {auc_torch:.8f}")

    example = torch_args(next(test.chunks(8)), data.dense_input)
    paths = export_both(model, example, args.workdir)
    failed = False
    sessions = {}
    for name, path in paths.items():
        sess = updlrm.load(path, threads=args.threads)
        sessions[name] = sess
        scores = sess.score((test.dense, test.sparse), batch_size=4096, progress=False)
        auc = roc_auc(test.labels, scores)
        diff = abs(auc - auc_torch)
        print(f"test AUC, updlrm ({name + ' export):':<20} {auc:.8f}  |diff| {diff:.1e}  "
              f"max |score diff| {np.abs(scores - torch_scores).max():.1e}")
        if not diff <= AUC_TOLERANCE:
            failed = True
            # AUC only sees the order of the scores: float rounding (a few 1e-8 here) can swap two
            # scores that close, and each swap moves the AUC by 1 / (positives * negatives).
            gap = np.abs(scores - torch_scores).max()
            close = int((np.diff(np.sort(torch_scores)) <= gap).sum())
            print(f"  {close} neighbouring PyTorch scores lie within {gap:.1e} of each other")
    print(f"AUC agreement within {AUC_TOLERANCE:g}: {'no' if failed else 'yes'}")

    ort_sessions = {}
    for name, path in paths.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.log_severity_level = 3  # its Loop-body rewrite warnings say nothing about the result
        ort_sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    sizes = [b for b in (int(s) for s in args.batch_sizes.split(",")) if b <= test.num_samples]
    print(f"\nper-batch latency, ms (measured, median of {args.repeats} after a warm-up; "
          f"{args.threads} threads; {os.cpu_count()} cores; first B test samples):")
    engines = (["pytorch eager"] + [f"updlrm cpu ({n})" for n in paths]
               + [f"onnxruntime ({n})" for n in paths])
    print(f"{'B':>6} " + " ".join(f"{e:>26}" for e in engines))
    for b in sizes:
        chunk = next(test.chunks(b))
        targs = torch_args(chunk, data.dense_input)

        def run_torch() -> None:
            with torch.inference_mode():
                model(*targs)

        row = [median_ms(run_torch, args.repeats)]
        for sess in sessions.values():
            row.append(median_ms(lambda: sess.predict(chunk.dense, chunk.sparse), args.repeats))
        for osess in ort_sessions.values():
            feeds = ort_feeds(osess, targs)
            row.append(median_ms(lambda: osess.run(None, feeds), args.repeats))
        print(f"{b:>6} " + " ".join(f"{v:>26.3f}" for v in row))
    for sess in sessions.values():
        sess.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
