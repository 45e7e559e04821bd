"""Alpha blending straight into YUV 4:2:0 planes, the encoder's own format.

Drawings are converted once to Y'CbCr (BT.709, limited range). A :class:`PlanarSprite` keeps
its luma and alpha at full resolution and, per position parity, its chroma and alpha averaged
over 2x2 blocks (premultiplied, so edges stay clean). A :class:`PlanarFrame` holds a full-size
luma plane and a half-size chroma image, so blending a sprite is two C-level pastes and reading
the frame out needs no colour conversion or chroma filtering at all. Alpha blending is linear,
so blending in Y'CbCr equals blending in RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av
import numpy as np
from PIL import Image

_TO_YCBCR = np.array(
    [[0.2126, 0.7152, 0.0722], [-0.1146, -0.3854, 0.5], [0.5, -0.4542, -0.0458]]
) * np.array([[219.0], [224.0], [224.0]])
_OFFSET = np.array([16.0, 128.0, 128.0])
TRANSPARENT = (16, 128, 128, 0)
"""Black in Y'CbCr, fully transparent."""


def to_ycbcr(image: Image.Image) -> Image.Image:
    """An RGBA image with its colour channels replaced by Y'CbCr (BT.709, limited range)."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    ycc = rgba[..., :3] @ (_TO_YCBCR.T / 255.0) + _OFFSET
    out = np.concatenate([np.clip(np.rint(ycc), 0, 255), rgba[..., 3:]], axis=-1)
    return Image.fromarray(out.astype(np.uint8), "RGBA")


@dataclass
class PlanarSprite:
    """A Y'CbCr drawing ready to blend, and the point of it that is positioned."""

    ycbcra: Image.Image
    """RGBA-mode image holding Y', Cb, Cr and alpha."""
    pivot: tuple[float, float]
    luma: Image.Image = field(init=False)
    alpha: Image.Image = field(init=False)
    _chroma: dict[tuple[int, int], tuple[Image.Image, Image.Image]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self.luma = self.ycbcra.getchannel(0)
        self.alpha = self.ycbcra.getchannel(3)

    @property
    def size(self) -> tuple[int, int]:
        return self.ycbcra.size

    def chroma(self, odd_x: int, odd_y: int) -> tuple[Image.Image, Image.Image]:
        """(Cb/Cr image, alpha) at half size, for a sprite placed at odd or even x and y."""
        key = (odd_x, odd_y)
        cached = self._chroma.get(key)
        if cached is None:
            width, height = self.size
            padded = Image.new(
                "RGBA",
                (width + odd_x + (width + odd_x) % 2, height + odd_y + (height + odd_y) % 2),
                TRANSPARENT,
            )
            padded.paste(self.ycbcra, (odd_x, odd_y))
            small = padded.convert("RGBa").reduce(2).convert("RGBA")
            _, cb, cr, alpha = small.split()
            cached = (Image.merge("RGB", (cb, cr, cr)), alpha)
            self._chroma[key] = cached
        return cached


class PlanarFrame:
    """A video frame under construction: luma plane (L) and half-size chroma (Cb, Cr, -)."""

    def __init__(self, luma: Image.Image, chroma: Image.Image) -> None:
        self.luma = luma
        self.chroma = chroma

    @classmethod
    def from_opaque(cls, ycbcra: Image.Image) -> PlanarFrame:
        """A frame from an opaque Y'CbCr image (chroma averaged over 2x2 blocks)."""
        _, cb, cr, _ = ycbcra.split()
        return cls(
            ycbcra.getchannel(0), Image.merge("RGB", (cb.reduce(2), cr.reduce(2), cr.reduce(2)))
        )

    @property
    def size(self) -> tuple[int, int]:
        return self.luma.size

    def copy(self) -> PlanarFrame:
        return PlanarFrame(self.luma.copy(), self.chroma.copy())

    def blend(self, sprite: PlanarSprite, origin: tuple[int, int]) -> None:
        """Blends ``sprite`` with its top-left at ``origin`` (Pillow clips at the edges)."""
        x, y = origin
        self.luma.paste(sprite.luma, (x, y), sprite.alpha)
        odd_x, odd_y = x & 1, y & 1
        chroma, alpha = sprite.chroma(odd_x, odd_y)
        self.chroma.paste(chroma, ((x - odd_x) // 2, (y - odd_y) // 2), alpha)

    def yuv420(self) -> np.ndarray:
        """The frame as a (height * 3/2, width) uint8 array: Y, then U, then V planes."""
        width, height = self.size
        out = np.empty((height * 3 // 2, width), np.uint8)
        out[:height] = np.asarray(self.luma)
        chroma = np.asarray(self.chroma)
        quarter = height // 4
        out[height : height + quarter] = chroma[..., 0].reshape(quarter, width)
        out[height + quarter :] = chroma[..., 1].reshape(quarter, width)
        return out

    def video_frame(self) -> av.VideoFrame:
        """The frame as a yuv420p ``av.VideoFrame``, written straight into its planes."""
        width, height = self.size
        frame = av.VideoFrame(width, height, "yuv420p")
        chroma = np.asarray(self.chroma)
        planes = (np.asarray(self.luma), chroma[..., 0], chroma[..., 1])
        for plane, pixels in zip(frame.planes, planes, strict=True):
            rows, columns = pixels.shape
            view = np.frombuffer(memoryview(plane), np.uint8)  # type: ignore[arg-type]
            view.reshape(rows, -1)[:, :columns] = pixels
        return frame
