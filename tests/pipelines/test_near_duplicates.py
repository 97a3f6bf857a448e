"""The near-duplicate rule ingest groups by and the gate checks."""

import numpy as np

from defectops import near_duplicates


def test_links_chain_into_one_cluster_and_distant_or_unhashed_images_stay_alone():
    hashes = [0b0000, 0b0001, 0b0011, 0xFFFF_0000, None, 0xFFFF_0001]
    # 0-1 and 1-2 are 1 bit apart (0-2 is 2 bits: linked only through 1); 3-5 are 1 bit apart.
    assert near_duplicates.clusters(hashes, max_distance=1) == [0, 0, 0, 3, 4, 3]
    assert near_duplicates.clusters(hashes, max_distance=0) == [0, 1, 2, 3, 4, 5]


def test_chunking_gives_the_same_answer_as_one_block(monkeypatch):
    rng = np.random.default_rng(0)
    base = [int(v) for v in rng.integers(0, 2**63, 40, dtype=np.int64)]
    hashes = base + [h ^ (1 << int(rng.integers(0, 60))) for h in base[:15]]  # 15 one-bit twins
    whole = near_duplicates.clusters(hashes, 2)
    monkeypatch.setattr(near_duplicates, "_CELLS", 7)  # a handful of pairs at a time
    assert near_duplicates.clusters(hashes, 2) == whole
    assert len(set(whole)) == 40
    values = near_duplicates.as_array(hashes)
    found = near_duplicates.within(values, np.arange(40, 55), np.arange(0, 40), max_distance=2)
    assert found == [(40 + i, i, 1) for i in range(15)]  # each twin, and nothing else, within 2 bits
