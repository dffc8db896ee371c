"""The inference session: dense sub-graphs on onnxruntime, embedding bags on a backend."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .backend import BackendStats, EmbeddingBackend
from .datasets.sources import open_samples
from .embedding_bag import SERIAL_BELOW_LOOKUPS
from .errors import InvalidInputError
from .progress import Progress
from .sparse import SparseBatch

log = logging.getLogger(__name__)

NONFINITE_POLICIES = ("raise", "warn", "allow")

#: Batches with fewer lookups run dense_pre on the calling thread, after the lookups: with two
#: cores the kernel's helper, a worker for dense_pre and onnxruntime's threads only get in each
#: other's way on short batches (MovieLens DLRM, B=256, 13k lookups of cached tables: 0.40 ms
#: overlapped, 0.17 ms in turn; 8 x 2 M-row tables: within noise either way from B=64 to 4096,
#: overlap 10% ahead at B=1024 with 20-80 lookups per bag, 410k lookups).
OVERLAP_MIN_LOOKUPS = 65536


@dataclass
class SessionStats:
    """Measured wall-clock seconds per stage, summed over the batches served, plus the backend's
    own report (whose ``modelled_s`` entries are estimates, not measurements)."""

    batches: int = 0
    samples: int = 0
    measured_s: dict[str, float] = field(default_factory=dict)
    backend: BackendStats | None = None

    def add(self, stage: str, seconds: float) -> None:
        self.measured_s[stage] = self.measured_s.get(stage, 0.0) + seconds


def _dense_options(threads: int | None, spin: bool) -> ort.SessionOptions:
    """onnxruntime options for a dense sub-graph; ``spin``: whether its workers poll for work
    after each run (onnxruntime's default).

    Spinning workers steal the cores the embedding kernel runs on (and dense_pre overlaps the
    lookups), so by default they sleep. Batches small enough for the kernel to pool them on
    the calling thread alone (``SERIAL_BELOW_LOOKUPS``) leave the other core free, and there
    waking sleeping workers is most of dense_post's time. Measured on the reference-MLP model
    (8 x 2 M x 64, 2 vCPUs, interleaved A/B): Session.run at B = 1 took 0.092 ms with a
    spinning dense_post against 0.111 ms, at B = 64, pooling 1, 0.32 against 0.37 ms; with
    every batch spinning, B = 4096 (pooling 1) took 21.0 against 17.2 ms.
    """
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


class _DenseRunner:
    """One onnxruntime session over a dense sub-graph, fed by name from a pool of values."""

    def __init__(self, graph, options: ort.SessionOptions) -> None:
        self.inputs = list(graph.inputs)
        self.outputs = list(graph.outputs)
        self.session = graph.session(options)

    def __call__(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name in self.inputs if name not in values]
        if missing:
            raise InvalidInputError(f"the dense graph needs {missing}, which this call does not "
                                    "supply (Session.run with the model's own feeds does)")
        feeds = {name: values[name] for name in self.inputs}
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))


def make_backend(backend: str | EmbeddingBackend, **options: Any) -> EmbeddingBackend:
    """Resolve ``"cpu"``, ``"pim"`` or a ready backend object."""
    if not isinstance(backend, str):
        return backend
    if backend == "cpu":
        from .cpu_backend import CpuBackend
        return CpuBackend(**options)
    if backend == "pim":
        from .pim import PimBackend
        return PimBackend(**options)
    raise ValueError(f"unknown backend {backend!r}: use 'cpu', 'pim' or an EmbeddingBackend")


class Session:
    """A loaded DLRM, ready to score. Create it with :func:`updlrm.load`.

    ``run`` is a drop-in for ``onnxruntime.InferenceSession.run`` (the model's own input names
    and arrays); ``predict`` takes dense features plus a :class:`SparseBatch`; ``score`` streams
    whole files.
    """

    def __init__(self, model, backend: EmbeddingBackend, *, threads: int | None = None,
                 nonfinite: str = "raise", profile: Any | None = None) -> None:
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        self.model = model
        self.backend = backend
        self.nonfinite = nonfinite
        self.tables = [bag.table for bag in model.bags]
        sparse_names = set()
        for bag in model.bags:
            src = bag.source
            sparse_names.update(n for n in (src.indices, src.offsets, src.weights) if n)
        self._dense_inputs = [i for i in model.inputs if i.name not in sparse_names]
        self._input_names = {i.name for i in model.inputs}
        self._pre = _DenseRunner(model.dense_pre, _dense_options(threads, spin=False)) \
            if model.dense_pre is not None else None
        self._post = self._post_spinning = None
        if model.dense_post is not None:
            self._post = _DenseRunner(model.dense_post, _dense_options(threads, spin=False))
            self._post_spinning = _DenseRunner(model.dense_post, _dense_options(threads, spin=True))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="updlrm-dense")
        self._stats = SessionStats()
        backend.load(self.tables, profile=profile)

    # -- introspection -------------------------------------------------------------------
    def get_inputs(self):
        """The model's own inputs (name, dtype, shape), as the ONNX file declares them."""
        return list(self.model.inputs)

    def get_outputs(self) -> list[str]:
        """Names of the model's outputs."""
        return list(self.model.output_names)

    @property
    def dense_inputs(self):
        """Inputs that feed the dense graphs (everything that is not an index/offset/weight)."""
        return list(self._dense_inputs)

    # -- scoring -------------------------------------------------------------------------
    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run like ``onnxruntime.InferenceSession.run``: feeds keyed by the model's input names."""
        if feeds.keys() != self._input_names:
            unknown = [k for k in feeds if k not in self._input_names]
            if unknown:
                raise InvalidInputError(f"unknown input(s) {unknown}; the model takes "
                                        f"{sorted(self._input_names)}")
            missing = [i.name for i in self.model.inputs if i.name not in feeds]
            raise InvalidInputError(f"missing input(s) {missing}")
        batch = self.model.batch_from_feeds(feeds) if self.tables else None
        dense = {i.name: np.asarray(feeds[i.name]) for i in self._dense_inputs}
        return self._forward(dense, batch, output_names, extra=feeds)

    def predict(self, dense: np.ndarray | Mapping[str, np.ndarray], sparse: SparseBatch | None) -> np.ndarray:
        """Score one batch: dense features (an array, or a dict for several dense inputs) and
        its bags. Returns the model's first output."""
        return self._forward(self._dense_dict(dense), sparse, None)[0]

    def score(self, source, *, batch_size: int = 4096, output: str | Path | None = None,
              progress: bool | None = None) -> np.ndarray | Path:
        """Score every sample of ``source`` in batches of ``batch_size``.

        ``source`` is a file (``.npz``, Criteo ``.tsv[.gz]``), a folder of ``.npy`` files, or a
        ``(dense, SparseBatch)`` pair — see :mod:`updlrm.datasets`. Returns the scores
        (first model output, flattened) or, with ``output``, writes them there (``.npy``, or
        one score per line for any other suffix) and returns the path. A progress bar shows on
        a terminal (``progress`` forces it on or off).

        With a backend that can run a batch asynchronously (``backend.submit``, e.g. the PIM
        backend), batches are pipelined: while the backend pools batch i, this thread runs
        ``dense_pre`` of batch i and ``dense_post`` of batch i-1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        samples = open_samples(source, dense_inputs=[(i.name, tuple(i.shape)) for i in self._dense_inputs],
                               tables=self.tables)
        first_output = self.model.output_names[:1]
        with _ScoreSink(output) as sink, Progress(samples.num_samples, enabled=progress) as bar:
            if hasattr(self.backend, "submit") and self.tables:
                previous = None
                for chunk in samples.chunks(batch_size):
                    request = self._prepare(chunk.dense, chunk.sparse)
                    t = time.perf_counter()
                    pending = self.backend.submit(request.batch)
                    self._stats.add("lookup", time.perf_counter() - t)
                    pre_out = self._timed_pre(request.values)
                    if previous is not None:
                        sink.add(self._finish(*previous, first_output)[0])
                        bar.update(previous[0].size)
                    t = time.perf_counter()
                    pooled = pending.result()
                    self._stats.add("lookup", time.perf_counter() - t)
                    previous = (request, pooled, pre_out)
                if previous is not None:
                    sink.add(self._finish(*previous, first_output)[0])
                    bar.update(previous[0].size)
            else:
                for chunk in samples.chunks(batch_size):
                    sink.add(self.predict(chunk.dense, chunk.sparse))
                    bar.update(chunk.size)
        return sink.result()

    def stats(self) -> SessionStats:
        """Measured per-stage seconds since load, and the backend's report."""
        self._stats.backend = self.backend.stats()
        return self._stats

    def close(self) -> None:
        """Stop the dense worker thread and release the backend's resources (e.g. its DPUs)."""
        self._pool.shutdown(wait=True)
        close_backend = getattr(self.backend, "close", None)
        if close_backend is not None:
            close_backend()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------
    def _dense_dict(self, dense) -> dict[str, np.ndarray]:
        names = [i.name for i in self._dense_inputs]
        if isinstance(dense, Mapping):
            missing = [n for n in names if n not in dense]
            if missing:
                raise InvalidInputError(f"missing dense input(s) {missing}")
            return {n: np.asarray(dense[n]) for n in names}
        if len(names) != 1:
            raise InvalidInputError(f"the model has dense inputs {names}: pass a dict of arrays")
        return {names[0]: np.asarray(dense)}

    def _check_dense(self, dense: Mapping[str, np.ndarray], batch_size: int) -> None:
        for spec in self._dense_inputs:
            arr = dense[spec.name]
            if arr.dtype != spec.dtype:
                raise InvalidInputError(f"dense input {spec.name!r}: dtype {arr.dtype}, the model "
                                        f"takes {spec.dtype}")
            if arr.ndim != len(spec.shape):
                raise InvalidInputError(f"dense input {spec.name!r}: {arr.ndim}-D array, the model "
                                        f"takes shape {tuple(spec.shape)}")
            for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
                if isinstance(want, int) and got != want:
                    raise InvalidInputError(f"dense input {spec.name!r}: size {got} on axis {axis}, "
                                            f"the model takes {want}")
            if arr.ndim and arr.shape[0] != batch_size:
                raise InvalidInputError(f"dense input {spec.name!r} has {arr.shape[0]} samples but "
                                        f"the bags describe {batch_size}")
            if self.nonfinite != "allow" and np.issubdtype(arr.dtype, np.floating):
                bad = ~np.isfinite(arr)
                if bad.any():
                    where = tuple(int(i) for i in np.argwhere(bad)[0])
                    msg = (f"dense input {spec.name!r}: {int(bad.sum())} non-finite value(s), first "
                           f"{arr[where]} at sample {where[0]}, position {where[1:]}")
                    if self.nonfinite == "raise":
                        raise InvalidInputError(msg + " (load(..., nonfinite='warn'|'allow') to accept)")
                    log.warning(msg)

    def _batch_size(self, dense: Mapping[str, np.ndarray], batch: SparseBatch | None) -> int:
        if self.tables:
            if batch is None:
                raise InvalidInputError(f"the model has {len(self.tables)} embedding tables: "
                                        "pass a SparseBatch")
            batch.validate(self.tables)
            return batch.batch_size
        sizes = {a.shape[0] for a in dense.values() if a.ndim}
        if len(sizes) != 1:
            raise InvalidInputError(f"dense inputs disagree on the number of samples: {sorted(sizes)}")
        return sizes.pop()

    def _prepare(self, dense: dict[str, np.ndarray], batch: SparseBatch | None,
                 extra: Mapping[str, np.ndarray] | None = None) -> "_Request":
        t = time.perf_counter()
        size = self._batch_size(dense, batch)
        self._check_dense(dense, size)
        values: dict[str, np.ndarray] = dict(extra or {})
        values.update(dense)
        self._stats.add("validate", time.perf_counter() - t)
        return _Request(values, batch, size)

    def _forward(self, dense: dict[str, np.ndarray], batch: SparseBatch | None,
                 output_names: Sequence[str] | None,
                 extra: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        request = self._prepare(dense, batch, extra)
        # The bottom MLP runs on a worker thread while this thread pools the bags (onnxruntime
        # releases the GIL and so does the CPU kernel) — unless the lookups are too few to hide
        # the hand-over (see OVERLAP_MIN_LOOKUPS).
        overlap = self._pre is not None and batch is not None and batch.num_lookups >= OVERLAP_MIN_LOOKUPS
        pre = self._pool.submit(self._timed_pre, request.values) if overlap else None
        t = time.perf_counter()
        pooled = self.backend.lookup(batch) if self.tables else []
        self._stats.add("lookup", time.perf_counter() - t)
        t = time.perf_counter()
        pre_out = pre.result() if overlap else self._timed_pre(request.values)
        self._stats.add("wait_dense_pre", time.perf_counter() - t)
        return self._finish(request, pooled, pre_out, output_names)

    def _timed_pre(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._pre is None:
            return {}
        t = time.perf_counter()
        out = self._pre(values)
        self._stats.add("dense_pre", time.perf_counter() - t)
        return out

    def _finish(self, request: "_Request", pooled: Sequence[np.ndarray], pre_out: Mapping[str, np.ndarray],
                output_names: Sequence[str] | None) -> list[np.ndarray]:
        """dense_post over the dense inputs, the pooled bags and dense_pre's outputs."""
        t = time.perf_counter()
        values = request.values
        values.update((bag.output, out) for bag, out in zip(self.model.bags, pooled))
        values.update(pre_out)
        if self._post is not None:
            small = request.batch is None or request.batch.num_lookups < SERIAL_BELOW_LOOKUPS
            values.update((self._post_spinning if small else self._post)(values))
        st = self._stats
        st.add("dense_post", time.perf_counter() - t)
        st.batches += 1
        st.samples += request.size
        names = self.model.output_names if output_names is None else output_names
        missing = [n for n in names if n not in values]
        if missing:
            raise InvalidInputError(f"unknown output(s) {missing}; the model has {self.model.output_names}")
        return [values[n] for n in names]


@dataclass
class _Request:
    """One validated batch on its way through the stages: every value by name, its bags, its size."""

    values: dict[str, np.ndarray]
    batch: SparseBatch | None
    size: int


class _ScoreSink:
    """Where ``Session.score`` puts scores: kept in memory, a ``.npy`` file, or text lines."""

    def __init__(self, output: str | Path | None) -> None:
        self.output = None if output is None else Path(output)
        self._parts: list[np.ndarray] = []
        self._text = None

    def __enter__(self) -> "_ScoreSink":
        if self.output is not None and self.output.suffix != ".npy":
            self._text = open(self.output, "w")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._text is not None:
            self._text.close()

    def add(self, scores: np.ndarray) -> None:
        scores = scores.reshape(scores.shape[0], -1)
        if self._text is not None:
            np.savetxt(self._text, scores, fmt="%.8g", delimiter="\t")
        else:
            self._parts.append(scores)

    def result(self) -> np.ndarray | Path:
        if self.output is None:
            return np.concatenate(self._parts).reshape(-1) if self._parts else np.empty(0, np.float32)
        if self._text is None:
            np.save(self.output, np.concatenate(self._parts) if self._parts else np.empty((0, 1), np.float32))
        return self.output


def load(path: str | Path, backend: str | EmbeddingBackend = "cpu", *, verify: bool = False,
         threads: int | None = None, nonfinite: str = "raise", profile: Any | None = None,
         **backend_options: Any) -> Session:
    """Import an ONNX DLRM and return a :class:`Session`.

    ``backend`` is ``"cpu"`` (default), ``"pim"`` or an :class:`EmbeddingBackend` object;
    extra keyword arguments go to the backend. ``verify`` checks every recognised embedding bag
    against onnxruntime on random inputs at load time. ``nonfinite`` says what NaN/inf in dense
    features do: ``"raise"`` (default), ``"warn"`` or ``"allow"``. ``threads`` caps the
    onnxruntime intra-op threads (and the CPU backend's threads unless given separately).
    """
    from .onnx_import import import_model

    model = import_model(path, verify=verify)
    if isinstance(backend, str) and backend == "cpu" and threads is not None:
        backend_options.setdefault("threads", threads)
    return Session(model, make_backend(backend, **backend_options), threads=threads,
                   nonfinite=nonfinite, profile=profile)
