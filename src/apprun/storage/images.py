"""Image rendering: resize and re-encode an image object, for thumbnails (``/render/image/...``).

The parameters are Supabase Storage's: ``width`` and ``height`` (pixels,
1..`MAX_DIMENSION`), ``resize`` (``cover``: fill the box and crop the
overflow, centred; ``contain``: fit inside the box, keeping the ratio;
``fill``: stretch to the box), ``quality`` (20..100, for lossy formats) and
``format`` (``origin``: the source's; or ``webp``, ``png``, ``jpeg``,
``avif``). With one side only, the other follows the source's ratio. An
image is never enlarged beyond its own size by ``contain``. A GIF renders
its first frame, as a PNG when the format is ``origin``.

Decoding needs the whole image, so the source is bounded: at most
`MAX_SOURCE_BYTES` bytes and `MAX_SOURCE_PIXELS` pixels (a "decompression
bomb", a small file that decodes to gigapixels, is refused before it is
decoded), and only the source formats below are opened: Pillow can read
many more (EPS hands the bytes to Ghostscript), none of which an upload may
reach. Rendering is CPU work: callers run `render` in a thread.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image, ImageOps

from apprun.kernel.errors import BadRequest

__all__ = [
    "FORMATS",
    "MAX_DIMENSION",
    "MAX_SOURCE_BYTES",
    "MAX_SOURCE_PIXELS",
    "SOURCE_TYPES",
    "Transform",
    "output_format",
    "parse_transform",
    "render",
]

MAX_DIMENSION = 2500
MAX_SOURCE_BYTES = 25 * 1024 * 1024
MAX_SOURCE_PIXELS = 50_000_000
#: The content types an image can be rendered from.
SOURCE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"})
#: Output format → (Pillow's name, content type).
FORMATS = {
    "webp": ("WEBP", "image/webp"),
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "avif": ("AVIF", "image/avif"),
}
_PIL_TO_FORMAT = {"WEBP": "webp", "PNG": "png", "JPEG": "jpeg", "GIF": "png", "AVIF": "avif"}
_TYPE_TO_FORMAT = {
    "image/webp": "webp",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "png",
    "image/avif": "avif",
}
#: What `Image.open` may try: the source formats, nothing else.
_OPENERS = ["JPEG", "PNG", "WEBP", "GIF", "AVIF"]
#: Modes every output format encodes; others (16-bit, CMYK, …) are converted first.
_ENCODABLE = {"RGB", "RGBA", "L", "LA", "P"}

Resize = Literal["cover", "contain", "fill"]
Format = Literal["origin", "webp", "png", "jpeg", "avif"]


@dataclass(frozen=True, slots=True)
class Transform:
    width: int | None = None
    height: int | None = None
    resize: Resize = "cover"
    quality: int = 80
    format: Format = "origin"

    def key(self) -> str:
        """A stable name for the derivative this transform makes (for its cache)."""
        return f"w{self.width or 0}-h{self.height or 0}-{self.resize}-q{self.quality}-{self.format}"

    def claims(self) -> dict[str, str]:
        """The transform as query parameters (what a signed link carries), `parse_transform`'s inverse."""
        params = {"resize": self.resize, "quality": str(self.quality), "format": self.format}
        if self.width is not None:
            params["width"] = str(self.width)
        if self.height is not None:
            params["height"] = str(self.height)
        return params


def _int(params: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    # A JSON body (storage3's ``transform``) sends numbers; a query string sends text. isascii: "²".isdigit().
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadRequest("storage.invalid_transform", params={"name": name, "low": low, "high": high})
    return int(text)


def parse_transform(params: Mapping[str, Any]) -> Transform:
    """The transform a query string, a JSON body or a signed link's claims ask for; 400 ``storage.invalid_transform``
    (a number out of range) or ``storage.invalid_transform_option`` (an unknown ``resize`` or ``format``)."""
    width = _int(params, "width", 1, MAX_DIMENSION)
    height = _int(params, "height", 1, MAX_DIMENSION)
    quality = _int(params, "quality", 20, 100)
    resize = str(params.get("resize") or "cover")
    fmt = str(params.get("format") or "origin")
    if resize not in ("cover", "contain", "fill"):
        raise BadRequest("storage.invalid_transform_option", params={"name": "resize", "value": resize[:20]})
    if fmt not in ("origin", *FORMATS):
        raise BadRequest("storage.invalid_transform_option", params={"name": "format", "value": fmt[:20]})
    return Transform(width, height, resize, 80 if quality is None else quality, fmt)  # type: ignore[arg-type]


def output_format(transform: Transform, source_type: str) -> str:
    """The format ``transform`` renders an object of ``source_type`` to (``origin`` resolved by the stored
    type, so a cached derivative's type is known without decoding it); 400 when the type is no image."""
    if source_type not in SOURCE_TYPES:
        raise BadRequest("storage.not_an_image")
    return _TYPE_TO_FORMAT[source_type] if transform.format == "origin" else transform.format


def _too_large() -> BadRequest:
    return BadRequest("storage.image_too_large", params={"bytes": MAX_SOURCE_BYTES, "pixels": MAX_SOURCE_PIXELS})


def render(source: bytes, transform: Transform) -> tuple[bytes, str]:
    """``source`` resized and encoded as ``transform`` says: the bytes and their content type."""
    if len(source) > MAX_SOURCE_BYTES:
        raise _too_large()
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 megapixels, when it opens a header: the bound below is lower and refuses.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(source), formats=_OPENERS)
        with opened:
            if opened.width * opened.height > MAX_SOURCE_PIXELS:
                raise _too_large()
            source_format = _PIL_TO_FORMAT.get(opened.format or "")
            if transform.width or transform.height:
                # A JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers the box: a 12-megapixel photo's
                # thumbnail in a fraction of the time. The longer side for both: EXIF may turn the image a quarter.
                side = max(transform.width or 0, transform.height or 0)
                opened.draft(None, (side, side))
            image = ImageOps.exif_transpose(opened)  # a photo's orientation, applied, so crops are right
            image.load()
    except Image.DecompressionBombError:  # past Pillow's own bound (179 megapixels), refused at open
        raise _too_large() from None
    except (OSError, SyntaxError, ValueError):
        raise BadRequest("storage.not_an_image") from None
    if source_format is None:
        raise BadRequest("storage.not_an_image")
    out = _resized(image, transform)
    name = source_format if transform.format == "origin" else transform.format
    pil_format, content_type = FORMATS[name]
    if out.mode not in _ENCODABLE:
        out = out.convert("RGBA")
    if pil_format == "JPEG" and out.mode not in ("RGB", "L"):
        out = out.convert("RGB")  # JPEG has no alpha channel
    buffer = io.BytesIO()
    options: dict[str, object] = (
        {"quality": transform.quality} if pil_format in ("JPEG", "WEBP", "AVIF") else {"optimize": True}
    )
    out.save(buffer, pil_format, **options)
    return buffer.getvalue(), content_type


def _resized(image: Image.Image, transform: Transform) -> Image.Image:
    width, height = transform.width, transform.height
    if width is None and height is None:
        return image
    if width is None or height is None:  # one side: the other keeps the ratio
        ratio = (width / image.width) if width is not None else (height or 1) / image.height
        size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        return image.resize(size, Image.Resampling.LANCZOS)
    if transform.resize == "fill":
        return image.resize((width, height), Image.Resampling.LANCZOS)
    if transform.resize == "contain":
        contained = image.copy()
        contained.thumbnail((width, height), Image.Resampling.LANCZOS)
        return contained
    return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
