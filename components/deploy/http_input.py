"""What the endpoint accepts from the network: API keys, body size, image bytes, part headers.

Untrusted input is checked here before any model sees it: a format from its magic bytes (Pillow
never guesses), size limits before decoding, part ids of printable characters only.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from pathlib import Path

from fastapi import HTTPException, Request
from PIL import Image

from defectops.components.deploy.serve_config import ServeConfig
from defectops.errors import DefectopsError

PART_FIELD = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")


class BadInput(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def load_api_keys(config: ServeConfig) -> set[str]:
    keys = {k.strip() for k in os.environ.get(config.api_keys_env, "").split(",") if k.strip()}
    if config.api_keys_file:
        keys |= {k.strip() for k in Path(config.api_keys_file).read_text().splitlines() if k.strip()}
    if not keys and config.require_api_key:
        raise DefectopsError(f"no API keys: set {config.api_keys_env} (comma-separated) or serve.api_keys_file, "
                             "or set serve.require_api_key: false for local development")
    return keys


def authorize(request: Request, keys: set[str]) -> None:
    """An API key in X-API-Key or Authorization: Bearer, compared in constant time; none needed if none set."""
    if not keys:
        return
    supplied = request.headers.get("x-api-key") or ""
    bearer = request.headers.get("authorization") or ""
    if bearer.lower().startswith("bearer "):
        supplied = supplied or bearer[7:].strip()
    if not any(secrets.compare_digest(supplied.encode(), k.encode()) for k in keys):
        raise HTTPException(401, "missing or invalid API key (X-API-Key header or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})


async def read_images(request: Request, config: ServeConfig) -> tuple[list[bytes], bool]:
    """The image bytes of a request (raw body, or multipart files = a batch) within the body limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > config.max_body_bytes:
        raise BadInput(413, f"body is {declared} bytes; the limit is {config.max_body_bytes}")
    # The limit holds while reading, whatever the headers say: a chunked body declares no length.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > config.max_body_bytes:
            raise BadInput(413, f"body exceeds the limit of {config.max_body_bytes} bytes")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async def replay() -> dict:
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=config.max_batch,
                                                             max_fields=config.max_batch)
        except Exception as exc:  # noqa: BLE001 - malformed multipart is the client's error
            raise BadInput(400, f"malformed multipart body: {exc}") from None
        files = [await v.read() for _, v in form.multi_items() if hasattr(v, "read")]
        if not files:
            raise BadInput(400, "multipart body has no file parts")
        if len(files) > config.max_batch:
            raise BadInput(413, f"{len(files)} images in one request; the limit is {config.max_batch}")
        return files, True
    return [bytes(body)], False


def part_of(request: Request) -> dict:
    """Which part this is, from x-part-id / x-line / x-station (all optional): the MES's keys."""
    part = {}
    for key in ("part_id", "line", "station"):
        header = f"x-{key.replace('_', '-')}"
        value = request.headers.get(header)
        if value is not None and not PART_FIELD.fullmatch(value):
            raise BadInput(400, f"header {header}: expected 1-128 printable characters without spaces at the "
                                f"ends, got {value[:40]!r}")
        part[key] = value
    return part


MAGIC = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",), "BMP": (b"BM",),
         "TIFF": (b"II*\x00", b"MM\x00*"), "GIF": (b"GIF87a", b"GIF89a"), "WEBP": (b"RIFF",)}


def sniff_format(data: bytes, allowed: list[str]) -> str:
    """The format the first bytes declare, from the allow-list only: Pillow then never tries the others."""
    for name in allowed:
        if any(data.startswith(magic) for magic in MAGIC.get(name, ())):
            return name
    raise BadInput(415, f"body does not start like an accepted image ({', '.join(allowed)}); "
                        f"first bytes: {data[:8].hex()}")


def decode_image(data: bytes, config: ServeConfig) -> Image.Image:
    """Open untrusted bytes safely: format sniffed from magic bytes, size limits checked before decoding."""
    if not data:
        raise BadInput(400, "empty body: send the raw image bytes (or multipart files)")
    declared = sniff_format(data, config.allowed_formats)
    try:
        image = Image.open(io.BytesIO(data), formats=[declared])
    except Image.DecompressionBombError as exc:
        raise BadInput(413, f"image refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever PIL says, the body is not an image
        raise BadInput(400, f"body is not a decodable {declared} image: {type(exc).__name__}") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > config.max_pixels or max(width, height) > config.max_side:
        raise BadInput(413, f"image is {width}x{height} pixels; the limits are {config.max_pixels} pixels and "
                            f"{config.max_side} px a side")
    if max(width, height) / min(width, height) > config.max_aspect_ratio:
        raise BadInput(422, f"image is {width}x{height} pixels: aspect ratio above {config.max_aspect_ratio:g}:1 "
                            "is refused (serve.max_aspect_ratio)")
    try:
        image.load()
        return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise BadInput(413, f"image refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise BadInput(400, f"image data is corrupt or truncated: {type(exc).__name__}: {exc}") from None
