"""A tiny fake of RecBole's wheel: the three ml-100k files in RecBole's atomic-file format, at the
paths the real wheel uses, with random users, items and ratings (timestamp ties included)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

MEMBER_DIR = "recbole/dataset_example/ml-100k/"
GENRES = ("Action", "Comedy", "Drama", "Film-Noir", "Children's")
OCCUPATIONS = ("student", "writer", "none")


def fake_files(seed: int = 0, users: int = 9, items: int = 14, ratings_per_user: tuple[int, int] = (1, 12)
               ) -> dict[str, str]:
    """File name -> text of fake ``ml-100k.inter`` / ``.user`` / ``.item``.

    Raw ids are sparse and unordered (so they must be remapped); one rating is by a user missing
    from ``.user`` and one of an item missing from ``.item``; one item has no genres and one the
    year "unkonwn" (as in RecBole's file); timestamps come from a narrow range, so ties happen.
    """
    rng = np.random.default_rng(seed)
    user_ids = rng.permutation(np.arange(3, 3 + 5 * users, 5))
    item_ids = rng.permutation(np.arange(7, 7 + 3 * items, 3))
    user_lines = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    for u in user_ids[:-1]:  # the last user rates but has no .user line
        user_lines.append(f"{u}\t{rng.integers(10, 70)}\t{rng.choice(['M', 'F'])}\t"
                          f"{rng.choice(OCCUPATIONS)}\t{rng.integers(10000, 99999):05d}")
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for k, i in enumerate(item_ids[:-1]):  # the last item is rated but has no .item line
        year = "unkonwn" if k == 1 else str(rng.integers(1930, 1999))
        genres = [] if k == 2 else list(rng.choice(GENRES, rng.integers(1, 4), replace=False))
        item_lines.append(f"{i}\tMovie {k} (a title)\t{year}\t{' '.join(genres)}")
    inter_lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    # Ratings = user bias + item bias + noise, so a model has something to learn.
    user_bias = dict(zip(user_ids, rng.normal(0, 1, users)))
    item_bias = dict(zip(item_ids, rng.normal(0, 1, items)))
    rows = []
    for u in user_ids:
        count = int(rng.integers(ratings_per_user[0], ratings_per_user[1] + 1))
        for i in rng.choice(item_ids, min(count, items), replace=False):
            rating = int(np.clip(np.rint(3.2 + user_bias[u] + item_bias[i] + rng.normal(0, 0.5)), 1, 5))
            rows.append(f"{u}\t{i}\t{rating}\t{880000000 + rng.integers(0, 8)}")
    rng.shuffle(rows)
    inter_lines += rows
    return {"ml-100k.inter": "\n".join(inter_lines) + "\n", "ml-100k.user": "\n".join(user_lines) + "\n",
            "ml-100k.item": "\n".join(item_lines) + "\n"}


def write_fake_wheel(path: Path, files: dict[str, str]) -> Path:
    """A zip at ``path`` holding ``files`` under the real wheel's folder (plus an unrelated member)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("recbole/__init__.py", "")
        for name, text in files.items():
            zf.writestr(MEMBER_DIR + name, text)
    return path
