"""The unit's QR code decodes back to its entry link.

Two independent proofs: a real decoder (zxing-cpp) reads the PNG the API serves, and
the PNG's pixels, read back with a minimal PNG reader, are exactly the module matrix of
a QR code for that link."""

from __future__ import annotations

import re
import struct
import uuid
import zlib

import httpx
import segno

from services.registration import domain, store
from services.registration.tests.conftest import PUBLIC_BASE_URL

SCALE, BORDER = 8, 4  # what the API renders with


def read_png_grey(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, one byte per pixel, 0 black .. 255 white) for a greyscale or
    palette PNG, non-interlaced, any bit depth up to 8: what segno writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, palette = 8, b"", None
    width = height = depth = colour = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert colour in (0, 3) and depth in (1, 2, 4, 8) and interlace == 0, (colour, depth, interlace)
        elif kind == b"PLTE":
            palette = [body[i:i + 3] for i in range(0, len(body), 3)]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = (width * depth + 7) // 8
    bytes_per_pixel = 1  # for filtering, bit depths below 8 count as one byte
    previous = bytearray(stride)
    pixels = bytearray()
    for row in range(height):
        start = row * (stride + 1)
        filter_type, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - bytes_per_pixel] if i >= bytes_per_pixel else 0
            up = previous[i]
            up_left = previous[i - bytes_per_pixel] if i >= bytes_per_pixel else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                estimate = left + up - up_left
                distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
                predictor = (left, up, up_left)[distances.index(min(distances))]
                line[i] = (line[i] + predictor) & 0xFF
        previous = line
        for x in range(width):
            bit_offset = x * depth
            sample = (line[bit_offset // 8] >> (8 - depth - bit_offset % 8)) & ((1 << depth) - 1)
            if colour == 3:
                assert palette is not None
                pixels.append(sum(palette[sample]) // 3)
            else:
                pixels.append(sample * 255 // ((1 << depth) - 1))
    return width, height, bytes(pixels)


def module_grid(width: int, height: int, pixels: bytes) -> list[list[bool]]:
    """Dark modules, sampled at the centre of each SCALE×SCALE cell inside the border."""
    size = width // SCALE - 2 * BORDER
    assert width == height == (size + 2 * BORDER) * SCALE
    centre = SCALE // 2
    return [
        [pixels[((BORDER + row) * SCALE + centre) * width + (BORDER + col) * SCALE + centre] < 128
         for col in range(size)]
        for row in range(size)
    ]


async def test_qr_code_decodes_back_to_the_entry_link(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit]
) -> None:
    import zxingcpp  # dev dependency (requirements/dev.in)

    for code in ("LC-P01", "HB-THPT1", "TP"):
        unit = demo_units[code]
        link = domain.invite_link(PUBLIC_BASE_URL, code)
        png = await client.get(f"/api/units/{unit.id}/invite.png")
        assert png.status_code == 200
        width, height, pixels = read_png_grey(png.content)

        # 1. A real decoder reads the served image.
        image = memoryview(pixels).cast("B", (height, width))
        decoded = zxingcpp.read_barcodes(image)
        assert [(barcode.format, barcode.text) for barcode in decoded] == [(zxingcpp.BarcodeFormat.QRCode, link)]

        # 2. Module for module, it is the QR code of that link.
        expected = [[bool(module) for module in row] for row in segno.make(link, error="m").matrix]
        assert module_grid(width, height, pixels) == expected


async def test_svg_qr_code_has_the_same_modules(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    unit = demo_units["LC-P01"]
    svg = (await client.get(f"/api/units/{unit.id}/invite.svg")).text
    png = (await client.get(f"/api/units/{unit.id}/invite.png")).content
    expected = segno.make(domain.invite_link(PUBLIC_BASE_URL, unit.code), error="m")
    # segno draws the dark modules as one path; its size says how many modules wide the code is.
    size = (len(expected.matrix) + 2 * BORDER) * SCALE
    assert re.search(rf'width="{size}" height="{size}"', svg)
    assert read_png_grey(png)[0] == size
    assert (await client.get(f"/api/units/{uuid.uuid4()}/invite.png")).status_code == 404
