"""Antialiased vector-ish drawing with Pillow: draw at 4x, shade in layers, scale down once."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from PIL import Image, ImageChops, ImageDraw, ImageFilter

SUPERSAMPLE = 4

Point = tuple[float, float]
Color = tuple[int, int, int] | tuple[int, int, int, int]


def bezier(p0: Point, p1: Point, p2: Point, p3: Point, steps: int = 20) -> list[Point]:
    """Points along a cubic Bézier curve, both ends included."""
    points = []
    for i in range(steps + 1):
        t = i / steps
        u = 1 - t
        points.append(
            (
                u**3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t**3 * p3[0],
                u**3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t**3 * p3[1],
            )
        )
    return points


def path(start: Point, *segments: tuple[Point, Point, Point], steps: int = 20) -> list[Point]:
    """A path of cubic segments ``(control1, control2, end)`` chained from ``start``."""
    points = [start]
    current = start
    for c1, c2, end in segments:
        points.extend(bezier(current, c1, c2, end, steps)[1:])
        current = end
    return points


def ellipse_points(cx: float, cy: float, rx: float, ry: float, steps: int = 64) -> list[Point]:
    return [
        (cx + rx * math.cos(2 * math.pi * i / steps), cy + ry * math.sin(2 * math.pi * i / steps))
        for i in range(steps)
    ]


def mirror(points: Iterable[Point], axis_x: float) -> list[Point]:
    return [(2 * axis_x - x, y) for x, y in points]


class Sketch:
    """An RGBA drawing surface in final-pixel coordinates, rendered at 4x for antialiasing."""

    def __init__(self, width: int, height: int, origin: Point = (0.0, 0.0)) -> None:
        """``origin`` is the canvas position of the surface's top-left: draw in canvas units."""
        self.width, self.height = width, height
        self.origin = origin
        self.image = Image.new("RGBA", (width * SUPERSAMPLE, height * SUPERSAMPLE), (0, 0, 0, 0))
        self._draw = ImageDraw.Draw(self.image)

    @classmethod
    def for_box(cls, box: tuple[int, int, int, int]) -> Sketch:
        """A surface covering the canvas box ``(left, top, right, bottom)``."""
        return cls(box[2] - box[0], box[3] - box[1], (box[0], box[1]))

    def _scaled(self, points: Sequence[Point]) -> list[Point]:
        ox, oy = self.origin
        return [((x - ox) * SUPERSAMPLE, (y - oy) * SUPERSAMPLE) for x, y in points]

    def polygon(
        self,
        points: Sequence[Point],
        fill: Color | None = None,
        outline: Color | None = None,
        width: float = 0,
    ) -> None:
        scaled = self._scaled(points)
        if fill is not None:
            self._draw.polygon(scaled, fill=fill)
        if outline is not None and width > 0:
            self.line([*points, points[0]], outline, width)

    def line(self, points: Sequence[Point], fill: Color, width: float) -> None:
        """A polyline with round caps and joints."""
        scaled = self._scaled(points)
        w = max(1, round(width * SUPERSAMPLE))
        self._draw.line(scaled, fill=fill, width=w, joint="curve")
        r = w / 2
        for x, y in (scaled[0], scaled[-1]):
            self._draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)

    def ellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        fill: Color | None = None,
        outline: Color | None = None,
        width: float = 0,
    ) -> None:
        (x0, y0), (x1, y1) = self._scaled([(cx - rx, cy - ry), (cx + rx, cy + ry)])
        box = (x0, y0, x1, y1)
        if fill is not None:
            self._draw.ellipse(box, fill=fill)
        if outline is not None and width > 0:
            self._draw.ellipse(box, outline=outline, width=max(1, round(width * SUPERSAMPLE)))

    def overlay(self, other: Sketch, clip: Sketch | None = None, blur: float = 0) -> None:
        """Composites ``other`` on top, optionally blurred and kept inside ``clip``'s shape."""
        top = other.image
        if blur:
            blurred = top.convert("RGBa").filter(ImageFilter.GaussianBlur(blur * SUPERSAMPLE))
            top = blurred.convert("RGBA")
        if clip is not None:
            alpha = ImageChops.multiply(top.getchannel("A"), clip.image.getchannel("A"))
            top = top.copy()
            top.putalpha(alpha)
        self.image.alpha_composite(top)

    def blank(self) -> Sketch:
        """A new empty surface of the same size (for shading layers and masks)."""
        return Sketch(self.width, self.height, self.origin)

    def finish(self) -> Image.Image:
        """The drawing at final size (premultiplied downscale, so edges stay clean)."""
        small = self.image.convert("RGBa").resize(
            (self.width, self.height), Image.Resampling.LANCZOS
        )
        return small.convert("RGBA")


def smooth_closed(points: Sequence[Point], steps: int = 8) -> list[Point]:
    """A closed Catmull-Rom spline through ``points``."""
    n = len(points)
    out: list[Point] = []
    for i in range(n):
        p0, p1, p2, p3 = points[i - 1], points[i], points[(i + 1) % n], points[(i + 2) % n]
        out.extend(_catmull_rom(p0, p1, p2, p3, steps))
    return out


def smooth_open(points: Sequence[Point], steps: int = 8) -> list[Point]:
    """An open Catmull-Rom spline through ``points`` (ends included)."""
    padded = [points[0], *points, points[-1]]
    out: list[Point] = []
    for i in range(1, len(padded) - 2):
        out.extend(_catmull_rom(padded[i - 1], padded[i], padded[i + 1], padded[i + 2], steps))
    out.append(points[-1])
    return out


def _catmull_rom(p0: Point, p1: Point, p2: Point, p3: Point, steps: int) -> list[Point]:
    def axis(a: float, b: float, c: float, d: float, t: float) -> float:
        return 0.5 * (
            2 * b
            + (-a + c) * t
            + (2 * a - 5 * b + 4 * c - d) * t * t
            + (-a + 3 * b - 3 * c + d) * t * t * t
        )

    return [
        (axis(p0[0], p1[0], p2[0], p3[0], j / steps), axis(p0[1], p1[1], p2[1], p3[1], j / steps))
        for j in range(steps)
    ]


def tapered_stroke(centre: Sequence[Point], half_width: Callable[[float], float]) -> list[Point]:
    """A closed outline around a centre line; ``half_width(t)`` for t from 0 to 1 along it."""
    left: list[Point] = []
    right: list[Point] = []
    n = len(centre)
    for i, (x, y) in enumerate(centre):
        ax, ay = centre[max(i - 1, 0)]
        bx, by = centre[min(i + 1, n - 1)]
        length = math.hypot(bx - ax, by - ay) or 1.0
        nx, ny = -(by - ay) / length, (bx - ax) / length
        w = half_width(i / (n - 1) if n > 1 else 0.0)
        left.append((x + nx * w, y + ny * w))
        right.append((x - nx * w, y - ny * w))
    return left + right[::-1]
