"""Procedural 64x64 "satellite" scenes for the ten EuroSAT classes (numpy only, deterministic per seed).

Every image is drawn from its own ``numpy.random.Generator`` seeded by (world seed, stream, class, index), so an
image never depends on the order or number of other images, and the dataset and the CLIP pre-training pool (two
different streams) never share a picture. Classes are built to overlap the way EuroSAT's do:
- the three vegetation classes (Forest, Herbaceous Vegetation, Pasture) differ in tone and texture scale only;
- Annual Crop and Permanent Crop are both patterned fields (strips vs rows of dots);
- Highway and River are both a band across a vegetated background, Sea/Lake shares River's water;
- Industrial and Residential are both grids of roofs (few large vs many small);
and any scene may carry a small element of another class (a lane, a pond, a few houses) and global sensor effects
(brightness, colour cast, haze, noise), so neither colour nor layout alone identifies the class.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

SIZE = 64

# Sorted folder order = label order (EuroSAT's folders, and the class names CoOp's reader uses for them).
FOLDERS: Tuple[str, ...] = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                            "PermanentCrop", "Residential", "River", "SeaLake")
CLASSNAMES: Tuple[str, ...] = ("Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
                               "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings",
                               "River", "Sea or Lake")

Image = np.ndarray  # float32 [SIZE, SIZE, 3] in [0, 1]

_C = (np.arange(SIZE, dtype=np.float32) + 0.5) / SIZE - 0.5
_X, _Y = np.meshgrid(_C, _C)  # x: columns, y: rows; both in (-0.5, 0.5)


# ------------------------------------------------------------------------------------------------------ helpers
def image_rng(seed: int, stream: int, label: int, index: int) -> np.random.Generator:
    """The generator of one image: independent of every other (seed, stream, label, index)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(label), int(index)]))


def _rotated(theta: float, cx: float = 0.0, cy: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in a frame rotated by ``theta`` around (cx, cy)."""
    c, s = math.cos(theta), math.sin(theta)
    x, y = _X - cx, _Y - cy
    return x * c + y * s, -x * s + y * c


def _noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1] with ``cells`` random values across the image (smoothstep interpolation)."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = (np.arange(SIZE, dtype=np.float32) + 0.5) * (cells / SIZE)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3.0 - 2.0 * f)
    rows = grid[i] * (1.0 - f)[:, None] + grid[i + 1] * f[:, None]             # [SIZE, cells + 1]
    return rows[:, i] * (1.0 - f)[None, :] + rows[:, i + 1] * f[None, :]       # [SIZE, SIZE]


def _fractal(rng: np.random.Generator, cells: int, octaves: int = 3) -> np.ndarray:
    """Sum of value-noise octaves (doubling frequency, halving amplitude), rescaled to [0, 1]."""
    total, amp, norm = np.zeros((SIZE, SIZE), np.float32), 1.0, 0.0
    for k in range(octaves):
        total += amp * _noise(rng, min(cells * 2 ** k, SIZE))
        norm += amp
        amp *= 0.5
    return total / norm


def _colour(rng: np.random.Generator, rgb: Sequence[float], spread: float = 0.04) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0.0, spread, 3).astype(np.float32), 0.0, 1.0)


def _paint(img: Image, alpha: np.ndarray, rgb) -> Image:
    """Alpha-blend colour (a 3-vector or an image) where ``alpha`` (in [0, 1]) is set."""
    a = np.clip(alpha, 0.0, 1.0)[..., None]
    return img * (1.0 - a) + np.asarray(rgb, np.float32) * a


def _band(distance: np.ndarray, half_width: float) -> np.ndarray:
    """Anti-aliased mask of the pixels within ``half_width`` of a curve (distance in image units)."""
    return np.clip((half_width - np.abs(distance)) * SIZE + 0.5, 0.0, 1.0)


def _shade(img: Image, rng: np.random.Generator, cells: int, amount: float) -> Image:
    """Multiplicative texture: brightness varies by +-amount with fractal noise of the given scale."""
    return img * (1.0 + amount * (2.0 * _fractal(rng, cells) - 1.0))[..., None]


# ------------------------------------------------------------------------------------------------- vegetation
GRASS = (0.42, 0.55, 0.28)
OLIVE = (0.42, 0.45, 0.25)
DARK_GREEN = (0.13, 0.27, 0.13)
SOIL = (0.52, 0.42, 0.30)
DRY = (0.70, 0.64, 0.42)
WATER = (0.10, 0.20, 0.30)
ASPHALT = (0.45, 0.45, 0.46)
CONCRETE = (0.58, 0.57, 0.54)


def forest(rng: np.random.Generator) -> Image:
    base = _colour(rng, DARK_GREEN, 0.035)
    img = np.broadcast_to(base, (SIZE, SIZE, 3)).astype(np.float32)
    img = _shade(img, rng, int(rng.integers(10, 20)), float(rng.uniform(0.25, 0.45)))
    crowns = _fractal(rng, 24, 2)
    img = _paint(img, (crowns > rng.uniform(0.6, 0.7)) * 0.5, base * 0.55)       # shadows between crowns
    if rng.random() < 0.35:                                                        # a clearing or a lighter stand
        clearing = _noise(rng, 3)
        img = _paint(img, np.clip((clearing - 0.72) * 8.0, 0, 1), _colour(rng, GRASS, 0.05))
    return img


def herbaceous(rng: np.random.Generator) -> Image:
    img = np.broadcast_to(_colour(rng, OLIVE, 0.05), (SIZE, SIZE, 3)).astype(np.float32)
    img = _paint(img, np.clip((_fractal(rng, 6) - 0.45) * 4.0, 0, 1) * 0.7, _colour(rng, SOIL, 0.05))
    img = _paint(img, np.clip((_fractal(rng, 5) - 0.55) * 4.0, 0, 1) * 0.6, _colour(rng, (0.30, 0.42, 0.20), 0.04))
    shrubs = _fractal(rng, 16, 2)
    img = _paint(img, (shrubs > rng.uniform(0.62, 0.72)) * 0.8, _colour(rng, DARK_GREEN, 0.04))
    return _shade(img, rng, 12, 0.12)


def pasture(rng: np.random.Generator) -> Image:
    a, b = _colour(rng, GRASS, 0.05), _colour(rng, (0.52, 0.60, 0.33), 0.05)
    img = _paint(np.broadcast_to(a, (SIZE, SIZE, 3)).astype(np.float32), _noise(rng, int(rng.integers(2, 4))), b)
    for _ in range(int(rng.integers(0, 3))):                                        # hedges between meadows
        u, v = _rotated(rng.uniform(0, math.pi), *rng.uniform(-0.3, 0.3, 2))
        img = _paint(img, _band(v, 0.012) * 0.8, _colour(rng, DARK_GREEN, 0.03))
    if rng.random() < 0.4:                                                         # scattered trees
        img = _paint(img, (_noise(rng, 32) > 0.93) * 0.9, _colour(rng, DARK_GREEN, 0.03))
    return _shade(img, rng, 4, 0.06)


# ------------------------------------------------------------------------------------------------------- crops
_CROP_COLOURS = ((0.33, 0.50, 0.22), (0.50, 0.62, 0.30), SOIL, DRY, (0.42, 0.33, 0.24), (0.60, 0.55, 0.30))


def annual_crop(rng: np.random.Generator) -> Image:
    u, v = _rotated(rng.uniform(0, math.pi))
    width = rng.uniform(0.07, 0.17)
    strip = np.floor((u + 1.0) / width).astype(np.int64)
    n = int(2.0 / width) + 2
    split = rng.uniform(-0.6, 0.6, n).astype(np.float32)
    palette = np.stack([_colour(rng, c, 0.04) for c in _CROP_COLOURS])
    table = rng.integers(0, len(_CROP_COLOURS), (n, 2))
    img = palette[table[strip, (v > split[strip]).astype(np.int64)]]
    rows = 0.5 + 0.5 * np.sin(2 * math.pi * u * rng.uniform(35, 60))               # sowing rows
    img = img * (1.0 - 0.08 * rows)[..., None]
    edge = np.abs(((u + 1.0) / width) % 1.0 - 0.5) > 0.47                          # tracks between strips
    img = _paint(img, edge * 0.5, _colour(rng, SOIL, 0.03))
    return _shade(img, rng, 8, 0.08)


def permanent_crop(rng: np.random.Generator) -> Image:
    ground = _paint(np.broadcast_to(_colour(rng, SOIL, 0.05), (SIZE, SIZE, 3)).astype(np.float32),
                    _noise(rng, 4) * 0.8, _colour(rng, OLIVE, 0.05))
    u, v = _rotated(rng.uniform(0, math.pi))
    su, sv = rng.uniform(0.035, 0.065), rng.uniform(0.03, 0.06)
    du, dv = (u / su) % 1.0 - 0.5, (v / sv) % 1.0 - 0.5
    rx = rng.uniform(0.22, 0.38)
    ry = rng.uniform(0.3, 0.45) if rng.random() < 0.6 else 0.6                      # orchard dots or vine rows
    plants = np.clip((1.0 - (du / rx) ** 2 - (dv / ry) ** 2) * 3.0, 0.0, 1.0)
    img = _paint(ground, plants * 0.9, _colour(rng, (0.22, 0.36, 0.15), 0.04))
    if rng.random() < 0.35:                                                        # a neighbouring arable parcel
        cut_u, _ = _rotated(rng.uniform(0, math.pi), *rng.uniform(-0.25, 0.25, 2))
        img = _paint(img, (cut_u > 0.0).astype(np.float32), annual_crop(rng))
    return _shade(img, rng, 8, 0.08)


# ------------------------------------------------------------------------------------------- bands and water
def _any_background(rng: np.random.Generator) -> Image:
    return (pasture, herbaceous, annual_crop, forest)[int(rng.choice(4, p=(0.35, 0.25, 0.25, 0.15)))](rng)


def _road(img: Image, rng: np.random.Generator, half_width: float) -> Image:
    u, v = _rotated(rng.uniform(0, math.pi), *rng.uniform(-0.2, 0.2, 2))
    if rng.random() < 0.3:                                                         # a gentle curve
        v = v + rng.uniform(0.05, 0.2) * np.sin(2 * math.pi * u * rng.uniform(0.3, 0.8) + rng.uniform(0, 6.3))
    img = _paint(img, _band(v, half_width + 0.02) * 0.7, _colour(rng, (0.62, 0.60, 0.52), 0.04))  # verges
    img = _paint(img, _band(v, half_width), _colour(rng, ASPHALT, 0.05))
    if half_width > 0.025 and rng.random() < 0.6:                                  # carriageway divider
        img = _paint(img, _band(v, 0.006) * 0.6, _colour(rng, (0.75, 0.75, 0.72), 0.03))
    return img


def highway(rng: np.random.Generator) -> Image:
    img = _road(_any_background(rng), rng, rng.uniform(0.025, 0.06))
    if rng.random() < 0.35:
        img = _road(img, rng, rng.uniform(0.015, 0.03))
    return _shade(img, rng, 8, 0.05)


def _water_colour(rng: np.random.Generator) -> np.ndarray:
    return _colour(rng, WATER, 0.045)


def river(rng: np.random.Generator) -> Image:
    img = _any_background(rng)
    u, v = _rotated(rng.uniform(0, math.pi), *rng.uniform(-0.15, 0.15, 2))
    centre = rng.uniform(0.03, 0.14) * np.sin(2 * math.pi * u * rng.uniform(0.5, 1.5) + rng.uniform(0, 6.3))
    half = rng.uniform(0.025, 0.09) * (1.0 + 0.25 * (2 * _noise(rng, 3) - 1))
    img = _paint(img, _band(v - centre, half + 0.015) * 0.6, _colour(rng, (0.55, 0.52, 0.40), 0.05))   # banks
    water = _shade(np.broadcast_to(_water_colour(rng), (SIZE, SIZE, 3)).astype(np.float32), rng, 6, 0.12)
    return _paint(img, _band(v - centre, half), water)


def sea_lake(rng: np.random.Generator) -> Image:
    deep = _colour(rng, (0.06, 0.16, 0.32), 0.05)
    img = _paint(np.broadcast_to(deep, (SIZE, SIZE, 3)).astype(np.float32), _noise(rng, 3) * 0.6, _water_colour(rng))
    img = _shade(img, rng, 8, 0.08)
    if rng.random() < 0.65:                                                        # a shore
        u, _ = _rotated(rng.uniform(0, 2 * math.pi))
        land = u + 0.25 * (2 * _fractal(rng, 3) - 1) - rng.uniform(0.05, 0.4)
        shore = (pasture if rng.random() < 0.5 else forest)(rng)
        img = _paint(img, np.clip(land * SIZE * 0.5 + 0.5, 0, 1), shore)
        img = _paint(img, _band(land, 0.012) * 0.7, _colour(rng, (0.72, 0.68, 0.55), 0.04))            # beach
    return img


# --------------------------------------------------------------------------------------------------- buildings
_ROOFS = ((0.60, 0.34, 0.28), (0.55, 0.55, 0.56), (0.72, 0.46, 0.30), (0.80, 0.80, 0.78), (0.36, 0.30, 0.30))


def _roof_grid(rng: np.random.Generator, img: Image, spacing: float, fill: Tuple[float, float], present: float,
               roofs: np.ndarray, street_every: int, street_half: float, street: np.ndarray) -> Image:
    """Rectangular roofs on a rotated grid of ``spacing``; every ``street_every``-th row of cells holds a street
    ``2 * street_half`` cells wide instead."""
    u, v = _rotated(rng.uniform(0, math.pi) if rng.random() < 0.7 else 0.0, *rng.uniform(-0.5, 0.5, 2))
    iu, iv = np.floor(u / spacing).astype(np.int64), np.floor(v / spacing).astype(np.int64)
    fu, fv = (u / spacing) % 1.0 - 0.5, (v / spacing) % 1.0 - 0.5
    n = 64
    hu = rng.uniform(fill[0], fill[1], (n, n)).astype(np.float32)
    hv = rng.uniform(fill[0], fill[1], (n, n)).astype(np.float32)
    here = rng.random((n, n)) < present
    colour = rng.integers(0, len(roofs), (n, n))
    ju, jv = iu % n, iv % n
    roof = here[ju, jv] & (np.abs(fu) < hu[ju, jv]) & (np.abs(fv) < hv[ju, jv])
    shadow = here[ju, jv] & (np.abs(fu - 0.08) < hu[ju, jv]) & (np.abs(fv - 0.08) < hv[ju, jv]) & ~roof
    is_street = (iu % street_every) == 0
    img = _paint(img, shadow * ~is_street * 0.5, np.zeros(3, np.float32))
    img = _paint(img, (roof & ~is_street).astype(np.float32), roofs[colour[ju, jv]])
    return _paint(img, (is_street & (np.abs(fu) < street_half)).astype(np.float32), street)


def residential(rng: np.random.Generator) -> Image:
    gardens = _paint(np.broadcast_to(_colour(rng, (0.38, 0.47, 0.28), 0.05), (SIZE, SIZE, 3)).astype(np.float32),
                     _fractal(rng, 8) * 0.7, _colour(rng, (0.50, 0.50, 0.45), 0.05))
    roofs = np.stack([_colour(rng, c, 0.04) for c in _ROOFS])
    img = _roof_grid(rng, gardens, rng.uniform(0.065, 0.1), (0.22, 0.36), rng.uniform(0.6, 0.95), roofs,
                     int(rng.integers(3, 6)), 0.5, _colour(rng, ASPHALT, 0.04))
    return _shade(img, rng, 12, 0.06)


def industrial(rng: np.random.Generator) -> Image:
    ground = _shade(np.broadcast_to(_colour(rng, CONCRETE, 0.05), (SIZE, SIZE, 3)).astype(np.float32), rng, 6, 0.1)
    roofs = np.stack([_colour(rng, c, 0.04) for c in ((0.82, 0.82, 0.80), (0.62, 0.64, 0.68), (0.50, 0.52, 0.55),
                                                       (0.60, 0.40, 0.32), (0.72, 0.74, 0.78))])
    img = _roof_grid(rng, ground, rng.uniform(0.17, 0.3), (0.28, 0.44), rng.uniform(0.5, 0.9), roofs,
                     int(rng.integers(2, 4)), 0.15, _colour(rng, ASPHALT, 0.04))
    if rng.random() < 0.3:                                                         # storage tanks
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(-0.4, 0.4, 2)
            r = rng.uniform(0.04, 0.08)
            disk = np.clip((r - np.hypot(_X - cx, _Y - cy)) * SIZE + 0.5, 0, 1)
            img = _paint(img, disk, _colour(rng, (0.85, 0.85, 0.83), 0.03))
    if rng.random() < 0.4:
        img = _paint(img, np.clip((_noise(rng, 3) - 0.7) * 6, 0, 1), _colour(rng, GRASS, 0.05))
    return _shade(img, rng, 12, 0.05)


# ------------------------------------------------------------------------------------------------------ scenes
RENDERERS: Tuple[Callable[[np.random.Generator], Image], ...] = (
    annual_crop, forest, herbaceous, highway, industrial, pasture, permanent_crop, residential, river, sea_lake)

# Small foreign elements a scene of each class may carry (never the element that defines another class outright).
_FOREIGN: Dict[int, Tuple[str, ...]] = {0: ("lane", "houses"), 1: ("lane", "pond"), 2: ("lane", "pond", "houses"),
                                        3: ("houses",), 4: ("lane",), 5: ("lane", "pond", "houses"),
                                        6: ("lane", "houses"), 7: ("pond",), 8: ("houses", "lane"), 9: ()}


def _foreign(img: Image, rng: np.random.Generator, kind: str) -> Image:
    if kind == "lane":
        return _road(img, rng, rng.uniform(0.01, 0.02))
    if kind == "pond":
        cx, cy = rng.uniform(-0.35, 0.35, 2)
        r = rng.uniform(0.05, 0.12) * (1.0 + 0.3 * (2 * _noise(rng, 4) - 1))
        return _paint(img, np.clip((r - np.hypot(_X - cx, _Y - cy)) * SIZE + 0.5, 0, 1), _water_colour(rng))
    houses = residential(rng)
    cx, cy = rng.uniform(-0.35, 0.35, 2)
    patch = np.clip((rng.uniform(0.1, 0.2) - np.maximum(np.abs(_X - cx), np.abs(_Y - cy))) * SIZE, 0, 1)
    return _paint(img, patch, houses)


def _sensor(img: Image, rng: np.random.Generator, strength: float) -> Image:
    """Acquisition effects shared by all classes: exposure, contrast, colour cast, haze, noise."""
    img = img * rng.uniform(1.0 - 0.25 * strength, 1.0 + 0.25 * strength)
    mean = img.mean(axis=(0, 1), keepdims=True)
    img = mean + (img - mean) * rng.uniform(1.0 - 0.3 * strength, 1.0 + 0.3 * strength)
    img = img * (1.0 + rng.normal(0.0, 0.06 * strength, 3).astype(np.float32))
    if rng.random() < 0.3 * strength:
        img = _paint(img, np.full((SIZE, SIZE), rng.uniform(0.1, 0.3), np.float32), _colour(rng, (0.7, 0.72, 0.75)))
    img = img + rng.normal(0.0, 0.025 * strength, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def render(label: int, rng: np.random.Generator, foreign_p: float = 0.3, sensor: float = 1.0) -> np.ndarray:
    """One uint8 [SIZE, SIZE, 3] scene of class ``label`` drawn with ``rng``."""
    img = RENDERERS[label](rng).astype(np.float32)
    kinds = _FOREIGN[label]
    if kinds and rng.random() < foreign_p:
        img = _foreign(img, rng, kinds[int(rng.integers(len(kinds)))])
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = _sensor(np.clip(img, 0.0, 1.0), rng, sensor)
    return np.round(img * 255.0).astype(np.uint8)


def render_many(labels: Sequence[int], seed: int, stream: int, indices: Sequence[int], **kw) -> List[np.ndarray]:
    return [render(int(c), image_rng(seed, stream, int(c), int(i)), **kw) for c, i in zip(labels, indices)]
