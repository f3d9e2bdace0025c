"""A bundle names the dataset, subject and models the app serves (``bundle.json`` in a folder).

``assets/demo/`` is the default bundle: SimNSD subject 1 (generated on first use, ~1 min on a laptop CPU)
plus the small models the project trains and ships. Paths inside a bundle are relative to the project
root unless absolute.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .data.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def work_root() -> Path:
    """The one root of what the project writes as it runs (caches, training runs, evaluations):
    ``$MINDEYE_HOME``, else the project folder. Relative run and output folders resolve against it."""
    import os
    return Path(os.environ.get("MINDEYE_HOME", PROJECT_ROOT))


def cache_root() -> Path:
    """Where cached targets and fits live: ``$MINDEYE_CACHE_DIR``, else ``work_root()/cache``."""
    import os
    return Path(os.environ.get("MINDEYE_CACHE_DIR", work_root() / "cache"))


def under_work_root(path: Path | str) -> Path:
    """``path`` as given when absolute, else under ``work_root()``."""
    path = Path(path)
    return path if path.is_absolute() else work_root() / path


DEMO_BUNDLE = PROJECT_ROOT / "assets" / "demo"


@dataclass
class Bundle:
    name: str
    dataset_kind: str  # "simnsd" | "nsd"
    data_path: Path
    subject: int
    seed: int = 0
    models: dict = field(default_factory=dict)
    folder: Path | None = None
    pool: str | None = None  # the large retrieval pool (folder or clip-retrieval URL) the Retrieve tab and CLI default to

    @classmethod
    def load(cls, folder: Path | str = DEMO_BUNDLE, data_path: Path | str | None = None) -> "Bundle":
        folder = Path(folder)
        path = folder / "bundle.json" if folder.is_dir() else folder
        if not path.exists():
            raise DataError(f"{path}: no bundle manifest (expected a folder with bundle.json)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from e
        ds = raw.get("dataset", {})
        for key in ("kind", "path", "subject"):
            if key not in ds:
                raise DataError(f"{path}: dataset.{key} is missing; found keys {sorted(ds)}")
        if ds["kind"] not in ("simnsd", "nsd"):
            raise DataError(f"{path}: dataset.kind should be 'simnsd' or 'nsd', found {ds['kind']!r}")
        dp = Path(data_path) if data_path else Path(ds["path"])
        if not dp.is_absolute():
            dp = PROJECT_ROOT / dp
        return cls(name=raw.get("name", folder.name), dataset_kind=ds["kind"], data_path=dp,
                   subject=int(ds["subject"]), seed=int(ds.get("seed", 0)), models=raw.get("models", {}),
                   folder=path.parent, pool=raw.get("pool"))

    def model_subject(self, key: str) -> int | None:
        """The subject a model of this bundle was trained on (MindEye models record it beside their weights);
        None for the subject-free ones (CLIP, VAE, decoder, judge)."""
        meta = self.resolve(self.models[key]).with_suffix(".json")
        if not meta.is_file():
            return None
        try:
            return json.loads(meta.read_text()).get("data", {}).get("subject")
        except (ValueError, AttributeError):
            return None

    def subjects(self) -> list[int]:
        """The subjects this bundle's dataset offers: SimNSD's four (simulated on first use), or the ones a
        converted NSD folder holds."""
        if self.dataset_kind == "simnsd":
            from .data.canonical import SIMNSD_SUBJECTS
            return list(SIMNSD_SUBJECTS)
        try:
            manifest = json.loads((self.data_path / "dataset.json").read_text())
            return sorted(int(k) for k in manifest.get("subjects", {}))
        except (OSError, ValueError):
            return [self.subject]

    def for_subject(self, subject: int | None) -> "Bundle":
        """This bundle on another subject of its dataset: the subject-free models stay, the MindEye models
        trained on another subject are left out (the app then shows only the tabs it can serve)."""
        if subject is None or int(subject) == self.subject:
            return self
        subject = int(subject)
        if subject not in self.subjects():
            raise DataError(f"subject {subject} is not in {self.name}'s dataset ({self.data_path}); it offers "
                            f"subjects {self.subjects()}")
        models = {k: v for k, v in self.models.items() if self.model_subject(k) in (None, subject)}
        return dataclasses.replace(self, subject=subject, models=models)

    def resolve(self, rel: str | Path) -> Path:
        """A path named in the manifest: absolute as is; relative to the bundle's folder when it exists there
        (so a bundle folder can be moved or copied whole), else relative to the project root."""
        p = Path(rel)
        if p.is_absolute():
            return p
        here = self.folder / p if self.folder is not None else None
        if here is not None and (here.exists() or here.with_suffix(".json").exists()):  # a folder, file or model stem
            return here
        return PROJECT_ROOT / p


def find_bundles(extra: list[Path] | None = None) -> list[Path]:
    """Bundle folders the app can offer: the demo, every folder with a bundle.json under ``assets/`` and
    ``work_root()/bundles/``, and ``extra`` (e.g. the one loaded now)."""
    found = [DEMO_BUNDLE]
    for root in (PROJECT_ROOT / "assets", work_root() / "bundles"):
        if root.is_dir():
            found += sorted(p.parent for p in root.glob("*/bundle.json"))
    found += [Path(p) for p in extra or []]
    out = []
    for p in found:
        p = Path(p).resolve()
        if p not in out and (p / "bundle.json").is_file():
            out.append(p)
    return out
