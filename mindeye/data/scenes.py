"""Procedural scenes: SimNSD's stimuli.

Every scene is a pure function of ``(seed, image_id)``: 1-3 coloured objects of a few shape classes on a
textured background, with a caption and structured labels. Scenes are what the simulated cortex sees, what
the demo CLIP is trained on, and what reconstructions are judged against, so the labels carry everything a
person would name in the picture: shape class, colour, size and position of each object, the background,
and the object count.

Objects are stored largest first, so ``labels["shape"][:, 0]`` is always the most salient object.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "moon")
COLOURS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 40),
    "green": (40, 170, 60),
    "cyan": (40, 210, 220),
    "blue": (40, 70, 220),
    "purple": (150, 50, 200),
    "white": (245, 245, 245),
}
COLOUR_NAMES = tuple(COLOURS)
BACKGROUNDS = ("grass", "sand", "sky", "water", "brick", "night")
SIZES = ("small", "medium", "large")
SIZE_RADIUS = (0.13, 0.19, 0.26)  # object radius as a fraction of the image side
MAX_OBJECTS = 3

# A background never gets an object of a colour it would swallow (a green square on grass is invisible).
_CLASHES = {"grass": {"green"}, "sky": {"cyan", "blue"}, "water": {"blue", "cyan"}, "sand": {"yellow", "orange"},
            "brick": {"red", "orange"}, "night": {"purple", "blue"}}


@dataclass(frozen=True)
class SceneObject:
    shape: int
    colour: int
    size: int
    x: float  # centre, 0 = left edge, 1 = right edge
    y: float  # centre, 0 = top edge, 1 = bottom edge
    angle: float  # rotation in degrees


@dataclass(frozen=True)
class Scene:
    image_id: int
    background: int
    objects: tuple[SceneObject, ...]  # largest first

    @property
    def caption(self) -> str:
        return caption(self)


def sample_scene(seed: int, image_id: int) -> Scene:
    """Draw the scene layout for one global image id (deterministic in ``(seed, image_id)``)."""
    rng = np.random.default_rng([seed, image_id, 7])
    background = int(rng.integers(len(BACKGROUNDS)))
    allowed = [i for i, c in enumerate(COLOUR_NAMES) if c not in _CLASHES[BACKGROUNDS[background]]]
    n = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    sizes = sorted(rng.integers(len(SIZES), size=n).tolist(), reverse=True)
    objects: list[SceneObject] = []
    for size in sizes:
        radius = SIZE_RADIUS[size]
        for _ in range(50):  # rejection sampling: objects may touch but not cover each other
            x, y = rng.uniform(radius, 1 - radius, size=2)
            if all(np.hypot(x - o.x, y - o.y) > 0.95 * (radius + SIZE_RADIUS[o.size]) for o in objects):
                break
        objects.append(SceneObject(shape=int(rng.integers(len(SHAPES))), colour=int(rng.choice(allowed)),
                                   size=int(size), x=float(x), y=float(y), angle=float(rng.uniform(-20, 20))))
    return Scene(image_id=image_id, background=background, objects=tuple(objects))


def _relation(a: SceneObject, b: SceneObject) -> str:
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) > abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _where(o: SceneObject) -> str:
    col = "left" if o.x < 0.38 else "right" if o.x > 0.62 else "centre"
    row = "top" if o.y < 0.38 else "bottom" if o.y > 0.62 else "middle"
    if col == "centre" and row == "middle":
        return "in the centre"
    if col == "centre":
        return f"at the {row}"
    if row == "middle":
        return f"on the {col}"
    return f"at the {row} {col}"


def _name(o: SceneObject, with_size: bool = False) -> str:
    """'a large red star', 'an orange ring'."""
    words = f"{SIZES[o.size]} " if with_size else ""
    words += f"{COLOUR_NAMES[o.colour]} {SHAPES[o.shape]}"
    return ("an " if words[0] in "aeiou" else "a ") + words


def caption(scene: Scene) -> str:
    """E.g. 'a large red star above a blue ring on grass'."""
    objs, bg = scene.objects, BACKGROUNDS[scene.background]
    first = objs[0]
    if len(objs) == 1:
        return f"{_name(first, True)} {_where(first)} on {bg}"
    text = f"{_name(first, True)} {_relation(first, objs[1])} {_name(objs[1])}"
    if len(objs) == 3:
        text += f" and {_name(objs[2], True)} {_where(objs[2])}"
    return f"{text} on {bg}"


# ---------------------------------------------------------------- rendering

def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    t = np.deg2rad(angle)
    if shape == "square":
        pts = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    elif shape == "triangle":
        pts = [(0, -1), (0.95, 0.75), (-0.95, 0.75)]
    elif shape == "diamond":
        pts = [(0, -1), (0.7, 0), (0, 1), (-0.7, 0)]
    elif shape == "star":
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        pts = list(zip(rad * np.cos(a), -rad * np.sin(a)))
    elif shape == "cross":
        w = 0.33
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
               (-w, -w)]
    else:
        return None
    c, s = np.cos(t), np.sin(t)
    return [(cx + r * (c * px - s * py), cy + r * (s * px + c * py)) for px, py in pts]


def _mask(obj: SceneObject, canvas: int) -> np.ndarray:
    shape = SHAPES[obj.shape]
    r, cx, cy = SIZE_RADIUS[obj.size] * canvas, obj.x * canvas, obj.y * canvas
    img = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "ring":
        draw.ellipse(box, fill=255)
        draw.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=0)
    elif shape == "moon":
        draw.ellipse(box, fill=255)
        off = 0.45 * r * np.array([np.cos(np.deg2rad(obj.angle)), np.sin(np.deg2rad(obj.angle))])
        draw.ellipse([cx - 0.85 * r + off[0], cy - 0.85 * r + off[1] - 0.2 * r,
                      cx + 0.85 * r + off[0], cy + 0.85 * r + off[1] - 0.2 * r], fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, obj.angle), fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Value noise: a coarse random grid upsampled bicubically to n x n, in [0, 1]."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((n, n), Image.BICUBIC), dtype=np.float32) / 255.0


def _background(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    coarse, fine = _smooth_noise(rng, n, 5), _smooth_noise(rng, n, 24)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "grass":
        blades = 0.5 + 0.5 * np.sin(xx * 70 + 3 * fine + phase)
        base, tex = np.array([70, 140, 50]), 0.25 * blades + 0.3 * coarse
    elif kind == "sand":
        base, tex = np.array([205, 180, 130]), 0.25 * fine + 0.15 * coarse
    elif kind == "sky":
        base, tex = np.array([110, 160, 230]), 0.6 * np.clip(coarse - 0.45, 0, 1) * 2 + 0.2 * yy
        tex = tex[..., None] * np.array([1.0, 0.7, 0.2], np.float32) * (120 / 255)
        return np.clip((base / 255).astype(np.float32) + tex, 0, 1)
    elif kind == "water":
        waves = 0.5 + 0.5 * np.sin(yy * 45 + 4 * coarse + 2 * np.sin(xx * 12 + phase))
        base, tex = np.array([30, 90, 140]), 0.35 * waves + 0.15 * fine
    elif kind == "brick":
        rows = (yy * 8).astype(int)
        mortar = (np.abs((yy * 8) % 1 - 0.5) > 0.44) | (np.abs((xx * 5 + 0.5 * (rows % 2)) % 1 - 0.5) > 0.46)
        base, tex = np.array([150, 70, 50]), 0.2 * fine + 0.6 * mortar
    else:  # night
        stars = (fine > 0.82).astype(np.float32) * 0.8
        base, tex = np.array([20, 20, 55]), 0.15 * coarse + stars
    img = (base / 255).astype(np.float32) * (0.7 + 0.6 * tex[..., None])
    return np.clip(img, 0, 1, out=img)


def background_image(kind: str, size: int = 96, seed: int = 0) -> np.ndarray:
    """A background alone, ``[size, size, 3]`` uint8 (e.g. a canvas to draw objects on)."""
    if kind not in BACKGROUNDS:
        raise ValueError(f"background should be one of {BACKGROUNDS}, got {kind!r}")
    img = _background(kind, size, np.random.default_rng([seed, 12]))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def render(scene: Scene, size: int = 96, seed: int = 0) -> np.ndarray:
    """Render a scene to ``[size, size, 3]`` uint8 (drawn at 2x and downsampled, so edges are anti-aliased)."""
    canvas = 2 * size
    rng = np.random.default_rng([seed, scene.image_id, 11])
    img = _background(BACKGROUNDS[scene.background], canvas, rng)
    for obj in reversed(scene.objects):  # smallest drawn last, on top
        # composite inside the object's bounding box only
        r = SIZE_RADIUS[obj.size] * canvas * 1.1
        y0, y1 = max(int(obj.y * canvas - r), 0), min(int(obj.y * canvas + r) + 2, canvas)
        x0, x1 = max(int(obj.x * canvas - r), 0), min(int(obj.x * canvas + r) + 2, canvas)
        m = _mask(obj, canvas)[y0:y1, x0:x1, None]
        yy = (np.arange(y0, y1, dtype=np.float32) / canvas)[:, None, None]
        shade = np.clip(1.0 - 0.35 * (yy - (obj.y - SIZE_RADIUS[obj.size])), 0.6, 1.1)  # lit from above
        colour = np.clip(np.array(COLOURS[COLOUR_NAMES[obj.colour]], np.float32) / 255 * shade, 0, 1)
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - m) + colour * m
    img8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(img8).resize((size, size), Image.LANCZOS))


def labels_of(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Structured labels, one row per scene, object slots padded with -1 (x, y, size padded with NaN/-1)."""
    n = len(scenes)
    out = {
        "background": np.array([s.background for s in scenes], np.int8),
        "n_objects": np.array([len(s.objects) for s in scenes], np.int8),
        "shape": np.full((n, MAX_OBJECTS), -1, np.int8),
        "colour": np.full((n, MAX_OBJECTS), -1, np.int8),
        "size": np.full((n, MAX_OBJECTS), -1, np.int8),
        "x": np.full((n, MAX_OBJECTS), np.nan, np.float32),
        "y": np.full((n, MAX_OBJECTS), np.nan, np.float32),
    }
    for i, s in enumerate(scenes):
        for k, o in enumerate(s.objects):
            out["shape"][i, k], out["colour"][i, k], out["size"][i, k] = o.shape, o.colour, o.size
            out["x"][i, k], out["y"][i, k] = o.x, o.y
    return out


def make_scenes(image_ids, seed: int = 0, size: int = 96, progress=None):
    """Render many scenes. Returns ``(images [N,size,size,3] uint8, captions list[str], labels dict)``."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    scenes = [sample_scene(seed, int(i)) for i in image_ids]
    images = np.empty((len(scenes), size, size, 3), np.uint8)
    it = range(len(scenes)) if progress is None else progress(range(len(scenes)))
    for k in it:
        images[k] = render(scenes[k], size, seed)
    return images, [caption(s) for s in scenes], labels_of(scenes)
