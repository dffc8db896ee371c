"""MovieLens-100k as a click-through-rate task with a real multi-hot bag: the user's history.

The data comes from RecBole's wheel on PyPI, which ships MovieLens-100k in RecBole's "atomic
file" format (``recbole/dataset_example/ml-100k/ml-100k.{inter,user,item}``: tab-separated, one
header line of ``name:type`` fields). :func:`load_movielens_100k` fetches that wheel with
``pip download --no-deps`` into a cache folder (``$UPDLRM_CACHE`` or ``~/.cache/updlrm``), checks
its SHA-256, reads the three files straight from the zip and caches the parsed columns as
``.npz``: later calls read only that file.

The CTR task
------------
* label: ``rating >= 4`` (float32 1.0 / 0.0).
* tables (bag order, one bag per table and sample; row 0 of every table means unknown):
  ``user``, ``item``, ``gender``, ``occupation``, ``age`` (bucket: <18, 18-24, 25-34, 35-44,
  45-49, 50-55, 56+), ``genres`` (the item's genres, multi-hot) and ``history`` (multi-hot,
  item rows: the items this user rated before this rating, oldest first, at most
  ``history_cap`` of them — the most recent ones).
* "before": a user's ratings are ordered by timestamp, ties by raw item id; a rating's history is
  every rating earlier in that order. Ratings with equal timestamps therefore see each other in
  one direction — a fixed, documented order, not a statement about which came first.
* dense input ``dense_x`` ``[N, 3]`` float32: ``age / 100``, ``(release_year - 1900) / 100``
  (0 when unknown) and ``log1p(history length)``.
* split, per user: the last ``holdout_per_user`` ratings in the order above are the test split
  (at most half of a user's ratings, so every user keeps training data); the rest is train.
  Every MovieLens-100k user has at least 20 ratings, so with the default 10 each user holds out
  exactly 10. A held-out rating's history holds the user's earlier held-out items too (which
  items, never their ratings), as it would when serving. Within a split samples are ordered by
  user row, then by that order.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InvalidInputError
from ..sparse import SparseBatch
from .sources import ArraySamples

log = logging.getLogger(__name__)

RECBOLE_VERSION = "1.2.1"
WHEEL_NAME = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MEMBER_DIR = "recbole/dataset_example/ml-100k/"
FILE_NAMES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
# Bump when the cached .npz layout changes, so an old cache file is never misread.
CACHE_FORMAT = 1

TABLES = ("user", "item", "gender", "occupation", "age", "genres", "history")
DENSE_INPUT = "dense_x"
DENSE_FEATURES = ("age", "release_year", "log1p_history_length")
AGE_BUCKET_EDGES = np.array([18, 25, 35, 45, 50, 56])

_HOW_TO_PROVIDE = (
    "Provide the data by hand: on a machine with network access run\n"
    f"    pip download --no-deps recbole=={RECBOLE_VERSION} -d DIR\n"
    f"and pass DIR/{WHEEL_NAME} as `source` (examples: --data), or copy it into the cache folder "
    "{cache}; or pass a folder holding ml-100k.inter, ml-100k.user and ml-100k.item in RecBole's "
    "atomic-file format.")


@dataclass(frozen=True)
class MovieLensCTR:
    """MovieLens-100k as a CTR task: table layout plus the train and test samples.

    ``train`` / ``test`` are :class:`~updlrm.datasets.ArraySamples` with one dense input
    (``dense_input``, columns ``dense_features``), one :class:`~updlrm.sparse.SparseBatch`
    with a bag per table of ``tables`` (int64 indices, ``N + 1`` offsets) and float32 labels.
    """

    tables: tuple[str, ...]
    rows: tuple[int, ...]
    dense_input: str
    dense_features: tuple[str, ...]
    history_cap: int | None
    genres: tuple[str, ...]
    train: ArraySamples
    test: ArraySamples

    def table_rows(self) -> dict[str, int]:
        """Rows per table, by table name."""
        return dict(zip(self.tables, self.rows))


def default_cache_dir() -> Path:
    """``$UPDLRM_CACHE`` if set, else ``~/.cache/updlrm``."""
    env = os.environ.get("UPDLRM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "updlrm"


def load_movielens_100k(source: str | Path | None = None, *, cache_dir: str | Path | None = None,
                        history_cap: int | None = 50, holdout_per_user: int = 10) -> MovieLensCTR:
    """MovieLens-100k as a CTR task (see the module docstring for features and split).

    ``source`` None: RecBole's wheel is taken from ``cache_dir`` (downloaded with pip if absent)
    and must have the pinned SHA-256; a mismatch raises :class:`DatasetError` and the file is
    left where it is. ``source`` a wheel (any RecBole release that ships ml-100k) or a folder
    holding the three ``ml-100k.*`` files: taken as given, without the pinned hash; checked are
    that the three files are there and that their headers name the fields used. The SHA-256 of
    the wheel (or of the three files) names the cache entry, so a changed file is parsed afresh
    and an unchanged wheel is not opened again. Offline without a cached copy:
    :class:`DatasetError` saying how to provide the data by hand.
    """
    if history_cap is not None and history_cap < 0:
        raise InvalidInputError(f"history_cap must be None or >= 0, got {history_cap}")
    if holdout_per_user < 0:
        raise InvalidInputError(f"holdout_per_user must be >= 0, got {holdout_per_user}")
    raw = read_raw(source, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    return build_ctr(raw, history_cap=history_cap, holdout_per_user=holdout_per_user)


# ---------------------------------------------------------------------------------------------
# Getting the three files


def read_raw(source: str | Path | None, cache_dir: Path) -> dict[str, np.ndarray]:
    """The parsed columns of the three files (see :func:`parse_files`), from the ``.npz`` cache
    when it has them."""
    if source is None:
        key = WHEEL_SHA256
        cached = _load_cache(cache_dir, key)
        if cached is not None:
            return cached
        wheel = cache_dir / WHEEL_NAME
        if not wheel.exists():
            _download_wheel(cache_dir)
        digest = _sha256(wheel.read_bytes())
        if digest != WHEEL_SHA256:
            raise DatasetError(
                f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256} (RecBole {RECBOLE_VERSION}). "
                "The file was left in place: delete it to download it again, or pass a file you "
                "trust as `source`.")
        texts = _texts_from_wheel(wheel)
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no MovieLens-100k source at {path}. "
                                    + _HOW_TO_PROVIDE.format(cache=cache_dir))
        if path.is_dir():
            texts = _texts_from_folder(path)
            key = _sha256(b"".join(texts[name] for name in FILE_NAMES))
        else:
            key = _sha256(path.read_bytes())
        cached = _load_cache(cache_dir, key)
        if cached is not None:
            return cached
        if not path.is_dir():
            texts = _texts_from_wheel(path)
    raw = parse_files(*(texts[name] for name in FILE_NAMES))
    _save_cache(cache_dir, key, raw)
    return raw


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download_wheel(cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", f"recbole=={RECBOLE_VERSION}", "-d", str(cache_dir)]
    log.info("downloading RecBole %s's wheel (MovieLens-100k inside) into %s", RECBOLE_VERSION, cache_dir)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetError(f"could not run {' '.join(cmd)}: {exc}\n"
                           + _HOW_TO_PROVIDE.format(cache=cache_dir)) from exc
    if done.returncode != 0 or not (cache_dir / WHEEL_NAME).exists():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise DatasetError(f"pip could not download RecBole {RECBOLE_VERSION}'s wheel (offline?); "
                           f"pip said:\n{tail}\n" + _HOW_TO_PROVIDE.format(cache=cache_dir))


def _texts_from_wheel(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [n for n in FILE_NAMES if MEMBER_DIR + n not in names]
            if missing:
                raise DatasetError(f"{path} has no {', '.join(MEMBER_DIR + n for n in missing)}")
            return {n: zf.read(MEMBER_DIR + n) for n in FILE_NAMES}
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{path} is not a wheel (zip) file: {exc}") from exc


def _texts_from_folder(path: Path) -> dict[str, bytes]:
    missing = [n for n in FILE_NAMES if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} has no {', '.join(missing)}. "
                                + _HOW_TO_PROVIDE.format(cache="(see load_movielens_100k)"))
    return {n: (path / n).read_bytes() for n in FILE_NAMES}


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"ml-100k-v{CACHE_FORMAT}-{key[:16]}.npz"


def _load_cache(cache_dir: Path, key: str) -> dict[str, np.ndarray] | None:
    path = _cache_path(cache_dir, key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as store:
            return {name: store[name] for name in store.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable cache file %s (%s); parsing the source again", path, exc)
        return None


def _save_cache(cache_dir: Path, key: str, raw: dict[str, np.ndarray]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _cache_path(cache_dir, key)
    # Write next to the target and rename, so a concurrent reader never sees half a file.
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **raw)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Parsing


def _table_lines(data: bytes, what: str, fields: tuple[str, ...]) -> tuple[list[int], list[list[str]]]:
    """Column positions of ``fields`` (by header name, ignoring ``:type``) and the split rows."""
    lines = data.decode("utf-8").splitlines()
    if not lines:
        raise DatasetError(f"{what} is empty")
    header = [f.split(":", 1)[0] for f in lines[0].split("\t")]
    missing = [f for f in fields if f not in header]
    if missing:
        raise DatasetError(f"{what}: header {lines[0]!r} lacks field(s) {missing}")
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DatasetError(f"{what} line {n}: {len(row)} fields, the header has {len(header)}")
    return [header.index(f) for f in fields], rows


def _int_column(rows: list[list[str]], col: int, what: str, field: str,
                missing: int | None = None) -> np.ndarray:
    """Integers of column ``col``; with ``missing`` set, a value that is not an integer (RecBole's
    ml-100k.item spells one unknown year "unkonwn") becomes ``missing`` instead of an error."""
    out = np.empty(len(rows), dtype=np.int64)
    for n, row in enumerate(rows):
        value = row[col].strip()
        try:
            out[n] = int(value)
        except ValueError:
            if missing is None:
                raise DatasetError(f"{what} data row {n + 1}: {field} is {value!r}, not an integer") from None
            out[n] = missing
    return out


def _codes(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary (sorted unique strings) and 1-based codes (0 stays free for unknown)."""
    vocab, inverse = np.unique(np.array(values, dtype=str), return_inverse=True)
    return vocab, inverse.astype(np.int64) + 1


def parse_files(inter: bytes, user: bytes, item: bytes) -> dict[str, np.ndarray]:
    """Columns of ``ml-100k.inter`` / ``.user`` / ``.item`` as NumPy arrays (no pickled objects,
    so they cache as a plain ``.npz``)."""
    cols, rows = _table_lines(inter, "ml-100k.inter", ("user_id", "item_id", "rating", "timestamp"))
    try:
        table = np.array([[r[c] for c in cols] for r in rows], dtype=np.float64).reshape(-1, 4)
    except ValueError as exc:
        raise DatasetError(f"ml-100k.inter holds a non-number: {exc}") from exc
    if np.isnan(table).any():
        raise DatasetError("ml-100k.inter holds NaN")
    raw = {"inter_user": table[:, 0].astype(np.int64), "inter_item": table[:, 1].astype(np.int64),
           "inter_rating": table[:, 2].astype(np.float32), "inter_timestamp": table[:, 3].astype(np.int64)}

    (c_id, c_age, c_gender, c_occ), rows = _table_lines(
        user, "ml-100k.user", ("user_id", "age", "gender", "occupation"))
    raw["user_id"] = _int_column(rows, c_id, "ml-100k.user", "user_id")
    raw["user_age"] = _int_column(rows, c_age, "ml-100k.user", "age", missing=-1)
    raw["gender_vocab"], raw["user_gender"] = _codes([r[c_gender] for r in rows])
    raw["occupation_vocab"], raw["user_occupation"] = _codes([r[c_occ] for r in rows])

    (c_id, c_year, c_class), rows = _table_lines(
        item, "ml-100k.item", ("item_id", "release_year", "class"))
    raw["item_id"] = _int_column(rows, c_id, "ml-100k.item", "item_id")
    raw["item_year"] = _int_column(rows, c_year, "ml-100k.item", "release_year", missing=0)
    genre_lists = [r[c_class].split() for r in rows]
    raw["genre_vocab"], raw["item_genre_codes"] = _codes([g for gs in genre_lists for g in gs])
    raw["item_genre_offsets"] = np.concatenate([[0], np.cumsum([len(gs) for gs in genre_lists])]).astype(np.int64)
    return raw


# ---------------------------------------------------------------------------------------------
# Building the CTR task


def _rows_of(ids: np.ndarray, vocab_ids: np.ndarray) -> np.ndarray:
    """1-based rows of ``ids`` in the sorted ``vocab_ids``."""
    return np.searchsorted(vocab_ids, ids).astype(np.int64) + 1


def _lookup(keys_rows: np.ndarray, values: np.ndarray, rows: np.ndarray, default) -> np.ndarray:
    """``values`` of the entity at each of ``rows`` (entities keyed by ``keys_rows``), ``default``
    for rows without an entry (ids that appear only in ratings)."""
    size = max(int(rows.max(initial=0)), int(keys_rows.max(initial=0))) + 1
    table = np.full(size, default, dtype=values.dtype)
    table[keys_rows] = values
    return table[rows]


def _gather_bags(starts: np.ndarray, lengths: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bags ``source[starts[i] : starts[i] + lengths[i]]`` concatenated, plus ``N + 1`` offsets."""
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    positions = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    return source[positions], offsets


def build_ctr(raw: dict[str, np.ndarray], *, history_cap: int | None = 50,
              holdout_per_user: int = 10) -> MovieLensCTR:
    """The CTR task from :func:`parse_files`' columns (see the module docstring)."""
    user_ids = np.unique(np.concatenate([raw["user_id"], raw["inter_user"]]))
    item_ids = np.unique(np.concatenate([raw["item_id"], raw["inter_item"]]))
    user_rows = _rows_of(raw["inter_user"], user_ids)
    item_rows = _rows_of(raw["inter_item"], item_ids)

    # One pass in (user, time, item id) order; lexsort is stable, so equal keys keep file order.
    order = np.lexsort((raw["inter_item"], raw["inter_timestamp"], user_rows))
    user_rows, item_rows = user_rows[order], item_rows[order]
    labels = (raw["inter_rating"][order] >= 4).astype(np.float32)
    n = user_rows.size

    first = np.flatnonzero(np.r_[True, user_rows[1:] != user_rows[:-1]]) if n else np.zeros(0, np.int64)
    counts = np.diff(np.r_[first, n])
    user_start = np.repeat(first, counts)
    position = np.arange(n, dtype=np.int64) - user_start      # ratings this user made before
    hist_len = position if history_cap is None else np.minimum(position, history_cap)
    history, history_off = _gather_bags(user_start + position - hist_len, hist_len, item_rows)

    known_users = _rows_of(raw["user_id"], user_ids)
    age = _lookup(known_users, raw["user_age"], user_rows, -1)
    age_bucket = np.where(age >= 0, np.digitize(age, AGE_BUCKET_EDGES) + 1, 0)
    gender = _lookup(known_users, raw["user_gender"], user_rows, 0)
    occupation = _lookup(known_users, raw["user_occupation"], user_rows, 0)

    known_items = _rows_of(raw["item_id"], item_ids)
    year = _lookup(known_items, raw["item_year"], item_rows, 0)
    g_off = raw["item_genre_offsets"]
    g_start = _lookup(known_items, g_off[:-1], item_rows, 0)
    g_len = _lookup(known_items, np.diff(g_off), item_rows, 0)
    genres, genres_off = _gather_bags(g_start, g_len, raw["item_genre_codes"])

    dense = np.stack([np.where(age >= 0, age / 100.0, 0.0),
                      np.where(year > 0, (year - 1900) / 100.0, 0.0),
                      np.log1p(hist_len)], axis=1).astype(np.float32)

    one_hot = np.arange(n + 1, dtype=np.int64)
    bags = [(user_rows, one_hot), (item_rows, one_hot), (gender, one_hot), (occupation, one_hot),
            (age_bucket.astype(np.int64), one_hot), (genres, genres_off), (history, history_off)]
    rows = (user_ids.size + 1, item_ids.size + 1, raw["gender_vocab"].size + 1,
            raw["occupation_vocab"].size + 1, AGE_BUCKET_EDGES.size + 2,
            raw["genre_vocab"].size + 1, item_ids.size + 1)

    held_out = np.minimum(holdout_per_user, counts // 2)
    is_test = position >= np.repeat(counts - held_out, counts)
    splits = [_take(np.flatnonzero(~is_test), dense, bags, labels),
              _take(np.flatnonzero(is_test), dense, bags, labels)]
    return MovieLensCTR(tables=TABLES, rows=rows, dense_input=DENSE_INPUT,
                        dense_features=DENSE_FEATURES, history_cap=history_cap,
                        genres=tuple(str(g) for g in raw["genre_vocab"]),
                        train=splits[0], test=splits[1])


def _take(samples: np.ndarray, dense: np.ndarray, bags: list[tuple[np.ndarray, np.ndarray]],
          labels: np.ndarray) -> ArraySamples:
    """The samples at ``samples`` (ascending positions) as an ArraySamples."""
    indices, offsets = [], []
    for values, off in bags:
        starts, lengths = off[samples], np.diff(off)[samples]
        idx, new_off = _gather_bags(starts, lengths, values)
        indices.append(idx)
        offsets.append(new_off)
    sparse = SparseBatch.from_jagged(indices, offsets, include_last_offset=True)
    return ArraySamples({DENSE_INPUT: np.ascontiguousarray(dense[samples])}, sparse,
                        np.ascontiguousarray(labels[samples]))
