"""Named view presets and render settings. A result always records which preset it used."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Each view is a sequence of (axis, degrees) rotations applied about the cloud's centre.
VIEW_PRESETS: dict[str, tuple[tuple[str, float], ...]] = {
    # The paper's text: 9 rotations about X (the reference uses this for Real3D-AD).
    "paper9": tuple(("x", float(d)) for d in (-144, -108, -72, -36, 0, 36, 72, 108, 144)),
    # The reference MVTec 3D-AD script: X at -45,-15,0,15,45 then Y at -30,-15,15,30.
    "mvtec9": tuple([("x", float(d)) for d in (-45, -15, 0, 15, 45)] + [("y", float(d)) for d in (-30, -15, 15, 30)]),
    # The reference Eyecandies script: X at -30,-15,0,10,20 then Y at -30,-15,15,30.
    "eyecandies9": tuple(
        [("x", float(d)) for d in (-30, -15, 0, 10, 20)] + [("y", float(d)) for d in (-30, -15, 15, 30)]
    ),
}

# Point splat size in pixels at the reference 1024 window, per MVTec class (DESIGN.md).
POINT_SIZE_AT_1024: dict[str, int] = {
    "bagel": 7, "cable_gland": 12, "carrot": 7, "cookie": 6, "dowel": 10,
    "foam": 8, "peach": 7, "potato": 8, "rope": 5, "tire": 8,
}
DEFAULT_POINT_SIZE = {"mvtec3d": 8, "eyecandies": 10, "real3d": 12, "synthetic": 8, "": 8}
# The categories `infer --dataset D --category C` (and align3d-inspect) accept: the datasets' classes,
# and for synthetic/real3d also the shapes `align3d-rt synth` writes.
DATASET_CATEGORIES: dict[str, tuple[str, ...]] = {
    "mvtec3d": tuple(POINT_SIZE_AT_1024),
    "eyecandies": ("candy_cane", "chocolate_cookie", "chocolate_praline", "confetto", "gummy_bear",
                   "hazelnut_truffle", "licorice_sandwich", "lollipop", "marshmallow", "peppermint_candy"),
    "real3d": ("airplane", "car", "candybar", "chicken", "diamond", "duck", "fish", "gemstone", "seahorse", "shell",
               "starfish", "toffees", "ellipsoid", "torus", "capsule", "cube"),
    "synthetic": ("dome", "ring", "box", "wave", "cylinder", *POINT_SIZE_AT_1024),
}


def category_problem(dataset: str, category: str) -> str | None:
    """Why ``--dataset``/``--category`` cannot be used together (None when they can)."""
    if not category:
        return None
    if not dataset:
        return f"--category {category!r}: needs --dataset (one of {', '.join(sorted(DATASET_CATEGORIES))})"
    known = DATASET_CATEGORIES.get(dataset, ())
    if category not in known:
        return f"--category {category!r}: not a {dataset} category; known: {', '.join(known)}"
    return None


@dataclass(frozen=True)
class RenderSettings:
    """Everything that changes the rendered pixels or the correspondences."""

    preset: str = "paper9"
    image_size: int = 336
    renderer: str = "splat"          # 'splat' (numba) or 'open3d' (reference look)
    point_size: int = 8              # splat side in pixels at the reference window size
    window: int = 1024               # reference window size the point size refers to
    normal_radius: float = 0.1       # normals: hybrid radius search (Real3D-AD: 0.8)
    normal_max_nn: int = 50          # (Real3D-AD: 30)
    gray: float = 0.7
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def views(self) -> tuple[tuple[str, float], ...]:
        if self.preset not in VIEW_PRESETS:
            raise ValueError(f"unknown view preset {self.preset!r}; known: {', '.join(VIEW_PRESETS)}")
        return VIEW_PRESETS[self.preset]

    @property
    def num_views(self) -> int:
        return len(self.views)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["views"] = [list(v) for v in self.views]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RenderSettings:
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in keys})


# The reference's per-dataset choices (DESIGN.md): view preset, window size, normal-estimation search.
_DATASET_PRESET = {"mvtec3d": "mvtec9", "synthetic": "mvtec9", "eyecandies": "eyecandies9", "real3d": "paper9"}
_DATASET_WINDOW = {"mvtec3d": 1024, "synthetic": 1024, "eyecandies": 1036, "real3d": 1036}
_DATASET_NORMALS = {"real3d": (0.8, 30)}


def settings_for(dataset: str, category: str = "", base: RenderSettings | None = None) -> RenderSettings:
    """Render settings for one dataset category, as the reference renders it.

    Sets the point size (per MVTec 3D-AD class; Eyecandies 10; Real3D-AD 12), the reference window
    (1024; 1036 for Eyecandies and Real3D-AD) and the normal search (Real3D-AD: radius 0.8, 30
    neighbours). With ``base`` None the dataset's view preset is used too; otherwise base's preset,
    renderer, image size, gray level and extra are kept.
    """
    from dataclasses import replace

    if dataset not in DEFAULT_POINT_SIZE or dataset == "":
        known = ", ".join(k for k in DEFAULT_POINT_SIZE if k)
        raise ValueError(f"unknown dataset {dataset!r}; known: {known}")
    point_size = DEFAULT_POINT_SIZE[dataset]
    if dataset in ("mvtec3d", "synthetic"):
        point_size = POINT_SIZE_AT_1024.get(category, point_size)
    radius, max_nn = _DATASET_NORMALS.get(dataset, (RenderSettings.normal_radius, RenderSettings.normal_max_nn))
    start = base if base is not None else RenderSettings(preset=_DATASET_PRESET[dataset])
    return replace(start, point_size=point_size, window=_DATASET_WINDOW[dataset], normal_radius=radius,
                   normal_max_nn=max_nn)
