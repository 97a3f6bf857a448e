"""Send the endpoint >= 10,000 malformed images and count its answers: none may be a 5xx.

    .venv/bin/python bench/malformed_inputs.py [--per-kind 1700] [--hypothesis 2000] [--clients 4]

Builds a real served model (one quick training epoch on the synthetic data: what is measured is input
handling, not accuracy), registers, approves, deploys and serves it on 127.0.0.1, then derives hostile
bodies from real images in PNG, JPEG, BMP and TIFF: bit flips, truncations, splices of two images,
header edits (declared size, bit depth, colour type, with and without a fixed checksum), repeated and
dropped chunks, plus hypothesis-generated bodies and content types. Prints a table of status codes per
kind, every 5xx with the body that caused it, and whether the server still answers afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from _endpoint import build_endpoint, served
from PIL import Image

FORMATS = ("PNG", "JPEG", "BMP", "TIFF")


def encodings(png_bytes: list[bytes]) -> list[bytes]:
    """Each real image in every accepted format."""
    out = []
    for body in png_bytes:
        image = Image.open(io.BytesIO(body)).convert("RGB")
        for fmt in FORMATS:
            buf = io.BytesIO()
            image.save(buf, format=fmt)
            out.append(buf.getvalue())
    return out


def flip_bits(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


def truncate(rng: random.Random, body: bytes) -> bytes:
    return body[:rng.randrange(len(body))]


def splice(rng: random.Random, body: bytes, other: bytes) -> bytes:
    return body[:rng.randrange(len(body))] + other[rng.randrange(len(other)):]


def _png_chunk(kind: bytes, data: bytes, fix_crc: bool) -> bytes:
    crc = zlib.crc32(kind + data) if fix_crc else 0xDEADBEEF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def edit_header(rng: random.Random, body: bytes) -> bytes:
    """Rewrite the fields that say how big and what kind the image is, keeping the rest."""
    sizes = [0, 1, 2, 3, 7, 65535, 65536, 1 << 20, 2**31 - 1, 2**32 - 1, rng.randrange(1, 1 << 16)]
    if body.startswith(b"\x89PNG"):
        width, height = rng.choice(sizes), rng.choice(sizes)
        depth, colour = rng.choice([0, 1, 2, 4, 8, 16, 3, 255]), rng.choice([0, 2, 3, 4, 6, 7, 255])
        ihdr = struct.pack(">IIBBBBB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, depth, colour,
                           rng.choice([0, 1]), rng.choice([0, 1]), rng.choice([0, 1, 2]))
        return body[:8] + _png_chunk(b"IHDR", ihdr, rng.random() < 0.8) + body[33:]
    if body.startswith(b"\xff\xd8"):
        at = body.find(b"\xff\xc0")
        if at < 0:
            return flip_bits(rng, body)
        data = bytearray(body)
        struct.pack_into(">HH", data, at + 5, rng.choice(sizes) & 0xFFFF, rng.choice(sizes) & 0xFFFF)
        data[at + 4] = rng.choice([0, 1, 8, 12, 16, 255])  # sample precision
        return bytes(data)
    if body.startswith(b"BM"):
        data = bytearray(body)
        width, height = rng.choice(sizes + [-7]), rng.choice(sizes) * rng.choice([1, -1])  # negative: top-down
        struct.pack_into("<IIHH", data, 18, width & 0xFFFFFFFF, height & 0xFFFFFFFF, rng.choice([0, 1, 2]),
                         rng.choice([0, 1, 4, 8, 16, 24, 32, 64]))
        return bytes(data)
    data = bytearray(body)  # TIFF: a random IFD entry's value
    count = struct.unpack_from("<H", data, struct.unpack_from("<I", data, 4)[0])[0] if len(data) > 16 else 0
    if count:
        entry = struct.unpack_from("<I", data, 4)[0] + 2 + 12 * rng.randrange(min(count, 20))
        if entry + 12 <= len(data):
            struct.pack_into("<I", data, entry + 8, rng.choice(sizes))
    return bytes(data)


def shuffle_chunks(rng: random.Random, body: bytes) -> bytes:
    """Repeat or drop a slice: PNG chunks twice, JPEG segments missing, a header pasted mid-file."""
    a, b = sorted(rng.randrange(len(body)) for _ in range(2))
    return body[:b] + body[a:b] + body[b:] if rng.random() < 0.5 else body[:a] + body[b:]


def hypothesis_bodies(n: int, seed_bodies: list[bytes]) -> list[tuple[bytes, str]]:
    """Bodies and content types drawn by hypothesis (the same strategies the fuzz test uses, more of them)."""
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    drawn: list[tuple[bytes, str]] = []
    small = min(seed_bodies, key=len)
    bodies = st.one_of(
        st.binary(max_size=4096),
        st.binary(max_size=512).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
        st.binary(max_size=512).map(lambda b: b"\xff\xd8\xff\xe0" + b),
        st.binary(max_size=512).map(lambda b: b"BM" + b),
        st.binary(max_size=512).map(lambda b: b"II*\x00" + b),
        st.integers(0, len(small)).map(lambda k: small[:k]),
    )
    types = st.sampled_from(["image/png", "application/octet-stream", "multipart/form-data",
                             "multipart/form-data; boundary=xyz", "text/plain", ""])

    @seed(20261123)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, content_type=types)
    def collect(body, content_type):
        drawn.append((body, content_type))

    collect()
    return drawn[:n]


def send_all(url: str, key: str, cases: list[tuple[str, bytes, str]], clients: int):
    import httpx

    statuses: dict[str, Counter] = defaultdict(Counter)
    failures: list[tuple[str, int, bytes, str]] = []
    lock = threading.Lock()
    queue = list(reversed(cases))

    def worker() -> None:
        with httpx.Client(timeout=60, headers={"x-api-key": key}) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    kind, body, content_type = queue.pop()
                try:
                    reply = http.post(f"{url}/v1/predict", content=body,
                                      headers={"content-type": content_type} if content_type else {})
                    status, text = reply.status_code, reply.text[:200]
                except httpx.HTTPError as exc:  # a dropped connection counts as a failure too
                    status, text = 599, f"{type(exc).__name__}: {exc}"
                with lock:
                    statuses[kind][status] += 1
                    if status >= 500:
                        failures.append((kind, status, body[:64], text))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, failures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-kind", type=int, default=1700, help="mutated bodies per mutation kind")
    parser.add_argument("--hypothesis", type=int, default=2000, help="hypothesis-drawn bodies")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=Path, default=None, help="Derive the bodies from these real images "
                                                                  "(e.g. ../shared/datasets/neu-det/IMAGES) "
                                                                  "instead of the synthetic ones served.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectops-malformed-"))
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
                      DEFECTOPS_ARTIFACT_ROOT=(work / "artifacts").as_uri(),
                      DEFECTOPS_AUDIT_LOG=str(work / "audit.jsonl"), DEFECTOPS_AUDIT_KEY="bench-audit-key")
    import httpx

    print("building a served model (one epoch, 128 px) ...", flush=True)
    real, params = build_endpoint(work, reason="malformed-input bench")
    if args.images:
        real = [p.read_bytes() for p in sorted(args.images.iterdir())[:12]]
    seeds = encodings(real[:12])
    rng = random.Random(args.seed)
    mutations = {"bit flips": lambda b: flip_bits(rng, b), "truncations": lambda b: truncate(rng, b),
                 "splices": lambda b: splice(rng, b, rng.choice(seeds)), "header edits": lambda b: edit_header(rng, b),
                 "repeated/dropped slices": lambda b: shuffle_chunks(rng, b)}
    cases = [(kind, mutate(rng.choice(seeds)), "image/png") for kind, mutate in mutations.items()
             for _ in range(args.per_kind)]
    cases += [("hypothesis", body, ctype) for body, ctype in hypothesis_bodies(args.hypothesis, seeds)]
    rng.shuffle(cases)

    key = "bench-key"
    with served(params, key, log=work / "server.log") as url:
        started = time.perf_counter()
        statuses, failures = send_all(url, key, cases, args.clients)
        seconds = time.perf_counter() - started
        alive = httpx.get(f"{url}/readyz", timeout=5).status_code == 200 and httpx.post(
            f"{url}/v1/predict", content=real[0], headers={"x-api-key": key}).status_code == 200

    codes = sorted({code for counter in statuses.values() for code in counter})
    print(f"\n{len(cases)} malformed inputs in {seconds:.0f} s ({len(cases) / seconds:.0f}/s, {args.clients} clients)")
    print("| kind | n | " + " | ".join(str(c) for c in codes) + " |")
    print("|---|---:|" + "---:|" * len(codes))
    for kind in sorted(statuses):
        counter = statuses[kind]
        print(f"| {kind} | {sum(counter.values())} | " + " | ".join(str(counter.get(c, 0)) for c in codes) + " |")
    total_5xx = sum(n for counter in statuses.values() for code, n in counter.items() if code >= 500)
    print(f"\nresponses >= 500: {total_5xx}; server alive and serving afterwards: {alive} (its log: "
          f"{work / 'server.log'})")
    for kind, status, head, text in failures[:20]:
        print(f"  {status} from {kind}: body starts {head.hex()} -> {text}")
    sys.exit(0 if total_5xx == 0 and alive else 1)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
