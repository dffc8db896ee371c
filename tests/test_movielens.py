"""MovieLens-100k loader against a fake RecBole wheel built here (CI never needs the registry)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from fake_movielens import fake_files, write_fake_wheel
from updlrm import EmbeddingTable, Pooling
from updlrm.datasets import ArraySamples, DatasetError, SampleChunk, load_movielens_100k
from updlrm.datasets import movielens


def python_twin(files: dict[str, str], cap: int | None, holdout: int) -> dict[str, list]:
    """The CTR samples, one dict each, computed line by line in plain Python; per split."""
    def table(name):
        lines = files[name].strip("\n").split("\n")
        header = [f.split(":")[0] for f in lines[0].split("\t")]
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

    inter, users, items = table("ml-100k.inter"), table("ml-100k.user"), table("ml-100k.item")
    user_rank = {u: r + 1 for r, u in enumerate(sorted({int(x["user_id"]) for x in inter + users}))}
    item_rank = {i: r + 1 for r, i in enumerate(sorted({int(x["item_id"]) for x in inter + items}))}
    genders = sorted({u["gender"] for u in users})
    occupations = sorted({u["occupation"] for u in users})
    genres = sorted({g for it in items for g in it["class"].split()})
    user_info = {int(u["user_id"]): u for u in users}
    item_info = {int(i["item_id"]): i for i in items}

    def bucket(age):
        for k, edge in enumerate((18, 25, 35, 45, 50, 56)):
            if age < edge:
                return k + 1
        return 7

    by_user: dict[int, list] = {}
    for x in inter:
        by_user.setdefault(user_rank[int(x["user_id"])], []).append(x)
    out = {"train": [], "test": []}
    for urow in sorted(by_user):
        ratings = sorted(by_user[urow], key=lambda x: (int(x["timestamp"]), int(x["item_id"])))
        n_test = min(holdout, len(ratings) // 2)
        seen: list[int] = []
        for p, x in enumerate(ratings):
            uid, iid = int(x["user_id"]), int(x["item_id"])
            u, it = user_info.get(uid), item_info.get(iid)
            history = seen if cap is None else seen[max(0, len(seen) - cap):]
            year = int(it["release_year"]) if it and it["release_year"].isdigit() else 0
            age = int(u["age"]) if u else None
            out["test" if p >= len(ratings) - n_test else "train"].append({
                "label": float(int(x["rating"]) >= 4),
                "bags": [[urow], [item_rank[iid]],
                         [genders.index(u["gender"]) + 1 if u else 0],
                         [occupations.index(u["occupation"]) + 1 if u else 0],
                         [bucket(age) if u else 0],
                         [genres.index(g) + 1 for g in it["class"].split()] if it else [],
                         list(history)],
                "dense": [age / 100 if u else 0.0, (year - 1900) / 100 if year else 0.0,
                          math.log1p(len(history))],
            })
            seen.append(item_rank[iid])
    return out


def bags_of(samples: ArraySamples, t: int) -> list[list[int]]:
    idx, off = samples.sparse.indices[t], samples.sparse.offsets[t]
    return [idx[off[b]:off[b + 1]].tolist() for b in range(samples.num_samples)]


@pytest.fixture
def fake(tmp_path):
    files = fake_files(seed=1)
    return files, write_fake_wheel(tmp_path / "fake.whl", files)


@pytest.mark.parametrize("cap,holdout", [(3, 2), (None, 4), (0, 0)])
def test_matches_python_twin(fake, tmp_path, cap, holdout):
    files, wheel = fake
    data = load_movielens_100k(wheel, cache_dir=tmp_path / "cache", history_cap=cap,
                               holdout_per_user=holdout)
    twin = python_twin(files, cap, holdout)
    assert data.tables == movielens.TABLES and data.history_cap == cap
    for split in ("train", "test"):
        got, want = getattr(data, split), twin[split]
        assert got.num_samples == len(want)
        assert got.labels.dtype == np.float32
        np.testing.assert_array_equal(got.labels, [w["label"] for w in want])
        dense = got.dense[data.dense_input]
        assert dense.dtype == np.float32 and dense.shape == (len(want), 3)
        np.testing.assert_allclose(dense, np.reshape([w["dense"] for w in want], (-1, 3)),
                                   rtol=1e-6, atol=1e-7)
        for t, name in enumerate(data.tables):
            assert got.sparse.indices[t].dtype == np.int64, name
            assert got.sparse.offsets[t].size == len(want) + 1, name
            assert bags_of(got, t) == [w["bags"][t] for w in want], name
    if holdout == 0:
        assert data.test.num_samples == 0


def test_rows_cover_every_index_and_chunks_plug_into_tables(fake, tmp_path):
    files, wheel = fake
    data = load_movielens_100k(wheel, cache_dir=tmp_path)
    tables = [EmbeddingTable(name, np.zeros((rows, 4), np.float32), Pooling.MEAN, False)
              for name, rows in zip(data.tables, data.rows)]
    for samples in (data.train, data.test):
        samples.sparse.validate(tables)
        chunks = list(samples.chunks(5))
        assert all(isinstance(c, SampleChunk) for c in chunks)
        assert sum(c.size for c in chunks) == samples.num_samples
    # The fake has 9 users, 14 items, 3 occupations, 5 genres; row 0 of each table is "unknown".
    assert data.table_rows() == {"user": 10, "item": 15, "gender": 3, "occupation": 4, "age": 8,
                                 "genres": 6, "history": 15}


def test_folder_source_gives_the_same_samples(fake, tmp_path):
    files, wheel = fake
    folder = tmp_path / "ml"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    a = load_movielens_100k(wheel, cache_dir=tmp_path / "c1")
    b = load_movielens_100k(folder, cache_dir=tmp_path / "c2")
    for split in ("train", "test"):
        x, y = getattr(a, split), getattr(b, split)
        np.testing.assert_array_equal(x.labels, y.labels)
        for t in range(len(a.tables)):
            np.testing.assert_array_equal(x.sparse.indices[t], y.sparse.indices[t])


def test_cache_is_reused_without_opening_the_wheel(fake, tmp_path, monkeypatch):
    files, wheel = fake
    cache = tmp_path / "cache"
    first = load_movielens_100k(wheel, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_parse(*args):
        raise AssertionError("parsed again")

    monkeypatch.setattr(movielens, "parse_files", no_parse)
    monkeypatch.setattr(movielens, "_texts_from_wheel", no_parse)
    second = load_movielens_100k(wheel, cache_dir=cache)
    np.testing.assert_array_equal(first.train.sparse.indices[6], second.train.sparse.indices[6])
    # A changed wheel is a new cache entry, parsed afresh.
    write_fake_wheel(wheel, fake_files(seed=2))
    with pytest.raises(AssertionError, match="parsed again"):
        load_movielens_100k(wheel, cache_dir=cache)


def test_default_source_checks_the_hash_then_caches(fake, tmp_path, monkeypatch):
    files, wheel = fake
    cache = tmp_path / "cache"
    cache.mkdir()
    cached_wheel = cache / movielens.WHEEL_NAME
    cached_wheel.write_bytes(wheel.read_bytes())
    monkeypatch.setattr(movielens, "_download_wheel", lambda d: pytest.fail("downloaded"))

    # The fake is not RecBole 1.2.1: the pinned hash rejects it and the file stays.
    with pytest.raises(DatasetError, match="SHA-256") as err:
        load_movielens_100k(cache_dir=cache)
    assert movielens.WHEEL_SHA256 in str(err.value) and cached_wheel.exists()

    # Pinned to the fake's hash it is accepted; afterwards the .npz alone serves.
    monkeypatch.setattr(movielens, "WHEEL_SHA256", movielens._sha256(wheel.read_bytes()))
    first = load_movielens_100k(cache_dir=cache)
    cached_wheel.unlink()
    second = load_movielens_100k(cache_dir=cache)
    np.testing.assert_array_equal(first.test.labels, second.test.labels)


def test_offline_download_says_how_to_provide_the_data(tmp_path, monkeypatch):
    for key, value in {"PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_NO_INDEX": "1",
                       "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull,
                       "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(DatasetError) as err:
        load_movielens_100k(cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "pip could not download" in message
    assert "pip download --no-deps recbole==1.2.1" in message and "ml-100k.inter" in message
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_missing_or_incomplete_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip download --no-deps"):
        load_movielens_100k(tmp_path / "nowhere.whl", cache_dir=tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "ml-100k.inter").write_text("user_id:token\n")
    with pytest.raises(FileNotFoundError, match="ml-100k.user, ml-100k.item"):
        load_movielens_100k(tmp_path / "folder", cache_dir=tmp_path)
    files = fake_files()
    del files["ml-100k.item"]
    with pytest.raises(DatasetError, match="ml-100k.item"):
        load_movielens_100k(write_fake_wheel(tmp_path / "partial.whl", files), cache_dir=tmp_path)
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a wheel"):
        load_movielens_100k(tmp_path / "junk.whl", cache_dir=tmp_path)


def test_malformed_files_are_named(tmp_path):
    files = fake_files()
    files["ml-100k.user"] = files["ml-100k.user"].replace("gender:token", "sex:token")
    with pytest.raises(DatasetError, match=r"ml-100k.user: header .* lacks field\(s\) \['gender'\]"):
        load_movielens_100k(write_fake_wheel(tmp_path / "a.whl", files), cache_dir=tmp_path)
    files = fake_files()
    files["ml-100k.inter"] += "1\t2\t3\n"
    with pytest.raises(DatasetError, match="ml-100k.inter line .*3 fields"):
        load_movielens_100k(write_fake_wheel(tmp_path / "b.whl", files), cache_dir=tmp_path)
