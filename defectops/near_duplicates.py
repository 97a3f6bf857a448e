"""Near-duplicate pictures by perceptual hash: one rule for the splitter (ingest) and the gate (validate).

Two kinds of closeness, told apart by the gate:
- a **copy**: one picture saved twice (the same file, the same pixels after decoding, or within
  COPY_DISTANCE bits with the same labels: a re-encoded JPEG). A copy in two splits is leakage:
  evaluation scores the model on what it trained on.
- a **look-alike**: within MAX_DISTANCE bits but not a copy: parts of one product, a defective board
  and the defect-free template of its region, a repeated track pattern. On a production line that
  is the normal state of the data; a published split holding them apart is the source's design.
Ingest's resplit keeps both kinds together (clusters within MAX_DISTANCE go to one split); the gate
blocks copies across splits and reports look-alikes. One hash, one pair of distances, defined here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from defectops.parallel import map_images

MAX_DISTANCE = 4  # perceptual-hash bits (of 64) within which two images show the same picture or design
# Within this many bits *and* with the same labels, two images are one picture saved twice (a re-encoded copy);
# further apart, or labelled differently, they are look-alikes: one product's parts, a board and its template.
COPY_DISTANCE = 2
_CELLS = 1 << 23  # pairwise distances computed at a time (64 MB of uint64 XORs), whatever the dataset's size


def phash(gray) -> int:
    """64-bit DCT hash of a greyscale PIL image (imagehash's phash) as an int."""
    import imagehash

    return int(str(imagehash.phash(gray)), 16)


def phash_file(path: Path) -> int | None:
    """The hash of an image file; None when it does not decode (validate names such files)."""
    try:
        with Image.open(path) as im:
            return phash(im.convert("L"))
    except Exception:  # noqa: BLE001 - an undecodable file is the gate's to report, not the hasher's
        return None


def hash_files(paths: list[Path]) -> list[int | None]:
    """Hashes of many files; decoding is the cost, so it runs on every core when there are many."""
    return map_images(phash_file, list(paths))


def _rows_per_chunk(columns: int) -> int:
    return max(1, _CELLS // max(columns, 1))


def as_array(hashes: list[int | None]) -> np.ndarray:
    return np.array([h if h is not None else 0 for h in hashes], dtype=np.uint64)


def within(values: np.ndarray, rows: np.ndarray, candidates: np.ndarray,
           max_distance: int) -> list[tuple[int, int, int]]:
    """(row, candidate, distance) for every pair within `max_distance` bits, nearest first per row."""
    found = []
    step = _rows_per_chunk(len(candidates))
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        distances = np.bitwise_count(values[chunk][:, None] ^ values[candidates][None, :])
        for a, b in zip(*np.nonzero(distances <= max_distance)):
            found.append((int(chunk[a]), int(candidates[b]), int(distances[a, b])))
    return sorted(found, key=lambda pair: (pair[0], pair[2], pair[1]))


def clusters(hashes: list[int | None], max_distance: int = MAX_DISTANCE) -> list[int]:
    """A cluster label per image (the index of its cluster's first member): images within
    `max_distance` bits are linked, and links chain (union-find). Unhashed images stay alone."""
    n = len(hashes)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    known = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    values = as_array(hashes)
    step = _rows_per_chunk(len(known))
    for start in range(0, len(known), step):
        chunk = known[start:start + step]
        later = known[start:]  # pairs (i, j) with j >= i's chunk start: every pair is seen once
        distances = np.bitwise_count(values[chunk][:, None] ^ values[later][None, :])
        for a, b in zip(*np.nonzero(distances <= max_distance)):
            i, j = int(chunk[a]), int(later[b])
            if i != j:
                ri, rj = root(i), root(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    return [root(i) for i in range(n)]
