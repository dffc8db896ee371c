"""What the importer hands to the engine: bags (tables + where their inputs come from) and the
dense sub-models around them."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..errors import ModelImportError
from ..tables import EmbeddingTable

if TYPE_CHECKING:
    import onnxruntime

    from ..sparse import SparseBatch

# Session config key that tells onnxruntime where to find external data of a model given as bytes.
_EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"


@dataclass(frozen=True)
class ModelInput:
    """One graph input of the original model: name, dtype, shape (None/str for dynamic dims)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...] | None


@dataclass(frozen=True)
class BagSource:
    """Which of the model's inputs feed one embedding bag.

    ``indices`` names a graph input; ``indices_row`` is set when that input is stacked ``[T, N]``
    and the bag reads row ``indices_row`` (same for ``offsets_row``, ``weights_row``).
    ``offsets`` is None for fixed-size 2-D bags (``fixed``: ``indices`` is ``[B, L]``, one bag per
    row). ``include_last_offset`` follows torch.nn.EmbeddingBag: offsets then have ``B + 1``
    entries, the last one closing the last bag.
    """

    indices: str
    indices_row: int | None = None
    offsets: str | None = None
    offsets_row: int | None = None
    weights: str | None = None
    weights_row: int | None = None
    include_last_offset: bool = False
    fixed: bool = False


@dataclass(frozen=True)
class ImportedBag:
    """One recognised embedding bag: its table, its inputs, and the value it replaces.

    ``output`` is the name of the pooled ``[B, dim]`` float32 value in the original graph, which
    ``dense_post`` takes as an input. ``pattern`` says which export form was found:
    "torchscript-loop", "dynamo-loop", "embedding-sum" (Gather + Reduce*, also mean/max) or
    "custom-op" (updlrm's own ``EmbeddingBag`` node).
    """

    table: EmbeddingTable
    source: BagSource
    output: str
    pattern: str


@dataclass
class DenseGraph:
    """A dense sub-model that onnxruntime runs.

    ``model`` is a small ModelProto whose initializers still point at the original model's external
    data files (nothing is copied); ``base_dir`` is the folder those files live in. ``inputs`` are
    the names it must be fed (graph inputs of the original model, pooled bag outputs, or
    ``dense_pre`` outputs), ``outputs`` the names it produces.
    """

    model: onnx.ModelProto
    base_dir: Path
    inputs: list[str]
    outputs: list[str]

    @property
    def num_nodes(self) -> int:
        """Number of top-level nodes."""
        return len(self.model.graph.node)

    def model_bytes(self) -> bytes:
        """The serialised sub-model (small: tables are never part of it)."""
        return self.model.SerializeToString()

    def session(self, options: "onnxruntime.SessionOptions | None" = None,
                providers: list[Any] | None = None) -> "onnxruntime.InferenceSession":
        """An onnxruntime session for this sub-model.

        The sub-model goes to onnxruntime as bytes, with ``options`` told where the external data
        lives (a session config entry); nothing is written to disk. Should onnxruntime not find
        the external data that way (a version without the config key), the sub-model is loaded
        from :meth:`save`'s file instead.
        """
        import onnxruntime as ort

        opts = options if options is not None else ort.SessionOptions()
        providers = providers or ["CPUExecutionProvider"]
        try:
            current = opts.get_session_config_entry(_EXTERNAL_FOLDER_KEY)
        except Exception:  # onnxruntime raises when the key is unset
            current = None
        if current != str(self.base_dir):
            opts.add_session_config_entry(_EXTERNAL_FOLDER_KEY, str(self.base_dir))
        try:
            return ort.InferenceSession(self.model_bytes(), opts, providers=providers)
        except Exception as exc:  # onnxruntime's own error types
            # Only a failure to find the external data is worth the file route (onnxruntime
            # before ~1.20 ignores the folder key and reports the data file as missing).
            locations, message = self._external_locations(), str(exc)
            if not locations or ("external" not in message.lower() and not any(loc in message for loc in locations)):
                raise
            return ort.InferenceSession(str(self.save()), opts, providers=providers)

    def _external_locations(self) -> list[str]:
        return sorted({e.value for t in self.model.graph.initializer
                       if t.data_location == onnx.TensorProto.EXTERNAL
                       for e in t.external_data if e.key == "location"})

    def save(self) -> Path:
        """Write the sub-model next to its external data (``base_dir``, a hidden name derived from
        its content) and return the path; table bytes are never copied.

        Only needed where onnxruntime cannot take bytes plus a data folder. A temporary folder of
        symlinks is no way out: onnxruntime 1.32 refuses external data whose real path leaves the
        model's folder. Raises ModelImportError when ``base_dir`` is not writable.
        """
        data = self.model_bytes()
        path = self.base_dir / f".updlrm-{self.model.graph.name}-{hashlib.sha1(data).hexdigest()[:12]}.onnx"
        if not path.exists():
            if not os.access(self.base_dir, os.W_OK):
                raise ModelImportError(f"cannot write the dense sub-model next to its data: {self.base_dir} "
                                       "is not writable")
            path.write_bytes(data)
        return path


@dataclass
class ImportedModel:
    """A DLRM ONNX model split into embedding bags (for updlrm's backends) and dense sub-models.

    ``bags`` are ordered as the model's interaction consumes them. ``dense_pre`` needs no embedding
    (the bottom MLP) and is None when nothing runs before the bags; ``dense_post`` takes the pooled
    bag outputs (plus ``dense_pre`` outputs and any graph inputs it reads) and produces the model's
    outputs. A model without bags has ``dense_pre=None`` and everything in ``dense_post``.
    """

    path: Path
    inputs: list[ModelInput]
    output_names: list[str]
    bags: list[ImportedBag]
    dense_pre: DenseGraph | None
    dense_post: DenseGraph
    opset: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def tables(self) -> list[EmbeddingTable]:
        """The bags' tables, in bag order."""
        return [b.table for b in self.bags]

    def batch_from_feeds(self, feeds: dict[str, np.ndarray]) -> "SparseBatch":
        """The ``SparseBatch`` of the bags, taken from the model's own feeds (ORT-style dict).

        Raises ``InvalidInputError`` naming a missing or ill-typed input.
        """
        from .feeds import sparse_batch_from_feeds

        return sparse_batch_from_feeds(self, feeds)
