"""Fuzz the live endpoint: malformed bodies and headers must give 4xx, never 5xx, never a crash."""

import io
import struct
import zlib

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from .conftest import API_KEY


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size: the decompression-bomb shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF) + b"\x00" * 16)


def _valid_png(size=16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (120, 120, 120)).save(buf, format="PNG")
    return buf.getvalue()


VALID = _valid_png()
bodies = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),  # PNG magic, garbage after
    st.binary(max_size=512).map(lambda b: b"\xff\xd8\xff\xe0" + b),  # JPEG magic, garbage after
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),  # truncations of a real image
    st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)).map(lambda wh: _png_header(*wh)),
    st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)).map(
        lambda ib: VALID[:ib[0]] + bytes([ib[1]]) + VALID[ib[0] + 1:]),  # one flipped byte
)
header_values = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60)
content_types = st.one_of(st.sampled_from(["image/png", "application/octet-stream", "multipart/form-data",
                                           "multipart/form-data; boundary=xyz", "text/plain", ""]), header_values)


@settings(deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, content_type=content_types, key=st.one_of(st.just(API_KEY), header_values))
def test_no_input_causes_a_server_error(endpoint, body, content_type, key):
    server, _ = endpoint
    headers = {"x-api-key": key}
    if content_type:
        headers["content-type"] = content_type
    reply = httpx.post(f"{server.url}/v1/predict", content=body, headers=headers, timeout=30)
    assert reply.status_code < 500, (reply.status_code, reply.text[:300])
    assert reply.status_code in (200, 400, 401, 413, 415, 422), reply.status_code


def test_server_still_answers_after_fuzzing(endpoint):
    server, _ = endpoint
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    reply = httpx.post(f"{server.url}/v1/predict", content=VALID, headers={"x-api-key": API_KEY})
    assert reply.status_code == 200
