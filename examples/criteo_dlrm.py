"""Score a Criteo-shaped DLRM exported to ONNX with updlrm's CPU backend, and check it against PyTorch.

    python examples/criteo_dlrm.py [--samples 20000] [--workdir /tmp/updlrm-demo]

What it does, as a user would:
1. builds a DLRM shaped like the reference model for Criteo Kaggle (13 dense features, 26
   embedding bags, "dot" interaction; table sizes are the Criteo cardinalities capped at
   ``--max-rows`` so the demo stays small) and exports it with ``torch.onnx.export`` exactly as
   facebookresearch/dlrm's ``--save-onnx`` does (TorchScript exporter, opset 11, stacked offsets
   and indices, dynamic batch);
2. writes a synthetic day file in the Criteo TSV format (label, I1..I13, C1..C26);
3. scores it with ``updlrm.load(model).score(tsv)`` — the CPU backend is the default;
4. scores the same samples with the PyTorch model and prints the largest difference.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import updlrm
from updlrm.datasets.synthetic import CRITEO_KAGGLE_CARDINALITIES


def mlp(sizes: list[int], last: nn.Module) -> nn.Sequential:
    """Linear layers with ReLU between them and ``last`` after the final one."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(n_in, n_out), last if i == len(sizes) - 2 else nn.ReLU()]
    return nn.Sequential(*layers)


def dot_interaction(x: torch.Tensor, ly: list[torch.Tensor], li: torch.Tensor, lj: torch.Tensor) -> torch.Tensor:
    """DLRM's "dot" interaction: the bottom MLP's output and the pairwise dot products (lower
    triangle ``li``, ``lj``) of it and the pooled embeddings, side by side."""
    z = torch.cat([x] + ly, dim=1).view(x.shape[0], -1, x.shape[1])
    zz = torch.bmm(z, z.transpose(1, 2))[:, li, lj]
    return torch.cat([x, zz], dim=1)


class CriteoDLRM(nn.Module):
    """Bottom MLP, one sum EmbeddingBag per categorical feature, dot interaction, top MLP."""

    def __init__(self, rows: list[int], dim: int = 16, bottom: tuple[int, ...] = (64,),
                 top: tuple[int, ...] = (64,)) -> None:
        super().__init__()
        self.bot = mlp([13, *bottom, dim], nn.ReLU())
        self.emb = nn.ModuleList(nn.EmbeddingBag(n, dim, mode="sum") for n in rows)
        for e, n in zip(self.emb, rows):
            nn.init.uniform_(e.weight, -(1 / n) ** 0.5, (1 / n) ** 0.5)
        t = len(rows) + 1
        self.li, self.lj = torch.tril_indices(t, t, offset=-1)
        self.top = mlp([dim + t * (t - 1) // 2, *top, 1], nn.Sigmoid())

    def forward(self, dense_x: torch.Tensor, offsets: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        x = self.bot(dense_x)
        ly = [e(indices[k], offsets[k]) for k, e in enumerate(self.emb)]
        return self.top(dot_interaction(x, ly, self.li, self.lj))


def export(model: CriteoDLRM, path: Path) -> None:
    b = 8
    example = (torch.rand(b, 13), torch.arange(b).repeat(26, 1), torch.zeros(26, b, dtype=torch.long))
    with warnings.catch_warnings():
        # torch warns that this exporter is deprecated and about the interaction's indexing;
        # it is still what the DLRM reference script uses.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), dynamo=False, opset_version=11,
                          input_names=["dense_x", "offsets", "indices"], output_names=["pred"],
                          dynamic_axes={"dense_x": {0: "batch_size"}, "offsets": {1: "batch_size"},
                                        "indices": {1: "batch_size"}, "pred": {0: "batch_size"}})


def write_criteo_tsv(path: Path, samples: int, rng: np.random.Generator) -> None:
    with open(path, "w") as f:
        for _ in range(samples):
            dense = rng.geometric(0.05, 13) - 1
            ints = ["" if rng.random() < 0.1 else str(v) for v in dense]
            cats = ["" if rng.random() < 0.05 else f"{rng.integers(0, 2**32):08x}" for _ in range(26)]
            f.write("\t".join([str(int(rng.random() < 0.25))] + ints + cats) + "\n")


def torch_scores(model: CriteoDLRM, tsv: Path, rows: list[int]) -> np.ndarray:
    """Parse the TSV the way the DLRM reference reader does and run the PyTorch model."""
    dense, cats = [], []
    for line in open(tsv):
        f = line.rstrip("\n").split("\t")
        dense.append([np.log1p(max(int(v), 0)) if v else 0.0 for v in f[1:14]])
        cats.append([int(v, 16) % n if v else 0 for v, n in zip(f[14:], rows)])
    x = torch.tensor(dense, dtype=torch.float32)
    idx = torch.tensor(cats).T.contiguous()
    off = torch.arange(len(dense)).repeat(26, 1)
    with torch.inference_mode():
        return model(x, off, idx).numpy().reshape(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--max-rows", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/updlrm-demo"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rows = [min(n, args.max_rows) for n in CRITEO_KAGGLE_CARDINALITIES]
    model = CriteoDLRM(rows).eval()
    onnx_path, tsv = args.workdir / "criteo_dlrm.onnx", args.workdir / "day_sample.tsv"
    export(model, onnx_path)
    write_criteo_tsv(tsv, args.samples, np.random.default_rng(0))
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB), wrote {args.samples:,} samples to {tsv}")

    with updlrm.load(onnx_path) as session:
        t = time.perf_counter()
        scores = session.score(tsv, batch_size=args.batch_size)
        elapsed = time.perf_counter() - t
        stats = session.stats()
    print(f"updlrm (cpu backend): {len(scores):,} samples in {elapsed:.2f} s "
          f"({len(scores) / elapsed:,.0f} samples/s, measured, including TSV parsing)")
    print("  per stage (s): " + ", ".join(f"{k} {v:.3f}" for k, v in stats.measured_s.items()))
    reference = torch_scores(model, tsv, rows)
    diff = float(np.abs(scores - reference).max())
    print(f"max |updlrm - pytorch| = {diff:.2e} over {len(scores):,} scores")
    if diff > 1e-5:
        raise SystemExit("scores differ from PyTorch by more than 1e-5")


if __name__ == "__main__":
    main()
