"""Rendering images: sizes per resize mode, formats, bounded sources, refusals with stable codes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from apprun.kernel.errors import BadRequest
from apprun.storage.images import Transform, parse_transform, render


def _png(width: int = 400, height: int = 300, mode: str = "RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), "red" if mode != "1" else 1).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("transform", "size"),
    [
        (Transform(100, 100, "cover"), (100, 100)),
        (Transform(100, 100, "contain"), (100, 75)),
        (Transform(100, 100, "fill"), (100, 100)),
        (Transform(100, None), (100, 75)),
        (Transform(None, 150), (200, 150)),
        (Transform(800, 800, "contain"), (400, 300)),  # contain never enlarges
        (Transform(), (400, 300)),
    ],
)
def test_sizes(transform: Transform, size: tuple[int, int]) -> None:
    out, content_type = render(_png(), transform)
    assert content_type == "image/png"
    assert Image.open(io.BytesIO(out)).size == size


@pytest.mark.parametrize(
    ("fmt", "content_type", "pil"),
    [("webp", "image/webp", "WEBP"), ("jpeg", "image/jpeg", "JPEG"), ("avif", "image/avif", "AVIF")],
)
def test_formats(fmt: str, content_type: str, pil: str) -> None:
    out, got = render(_png(), parse_transform({"width": "50", "format": fmt, "quality": "60"}))
    assert got == content_type
    assert Image.open(io.BytesIO(out)).format == pil


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"width": "0"}, "storage.invalid_transform"),
        ({"width": "2501"}, "storage.invalid_transform"),
        ({"height": "-1"}, "storage.invalid_transform"),
        ({"quality": "101"}, "storage.invalid_transform"),
        ({"resize": "stretch"}, "storage.invalid_transform_option"),
        ({"format": "heic"}, "storage.invalid_transform_option"),
        ({"width": "²"}, "storage.invalid_transform"),  # a digit to str.isdigit, not to int()
        ({"width": 1.5}, "storage.invalid_transform"),
    ],
)
def test_bad_parameters_are_refused(query: dict[str, str], code: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_transform(query)
    assert refused.value.code == code


def test_only_the_source_formats_are_opened() -> None:
    """Pillow reads BMP, TIFF, EPS (through Ghostscript), …: none of them is decoded for a render."""
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, "BMP")
    with pytest.raises(BadRequest) as refused:
        render(buffer.getvalue(), Transform(5, 5))
    assert refused.value.code == "storage.not_an_image"


def test_a_transform_round_trips_through_a_signed_links_claims() -> None:
    transform = parse_transform({"width": 120, "resize": "contain", "format": "webp"})
    assert parse_transform(transform.claims()) == transform


def test_what_is_not_an_image_is_refused() -> None:
    with pytest.raises(BadRequest) as refused:
        render(b"%PDF-1.7 not an image", Transform(10, 10))
    assert refused.value.code == "storage.not_an_image"


def test_a_decompression_bomb_is_refused_before_it_is_decoded() -> None:
    bomb = _png(8000, 8000, mode="1")  # 64 megapixels in a few kilobytes
    assert len(bomb) < 100_000
    with pytest.raises(BadRequest) as refused:
        render(bomb, Transform(10, 10))
    assert refused.value.code == "storage.image_too_large"


def test_a_bomb_past_pillows_own_bound_is_too_large_not_broken() -> None:
    bomb = _png(15000, 15000, mode="1")  # 225 megapixels: Pillow itself refuses it at open
    with pytest.raises(BadRequest) as refused:
        render(bomb, Transform(10, 10))
    assert refused.value.code == "storage.image_too_large"


@pytest.mark.parametrize(("orientation", "size"), [(1, (100, 50)), (6, (100, 200))])
def test_a_jpeg_decoded_at_a_smaller_scale_keeps_its_size_and_orientation(
    orientation: int, size: tuple[int, int]
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # a camera held upright stores the pixels turned and says so here
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 800), "blue").save(buffer, "JPEG", exif=exif)
    out, content_type = render(buffer.getvalue(), Transform(100, None))
    assert (content_type, Image.open(io.BytesIO(out)).size) == ("image/jpeg", size)
