"""Benchmark evaluation: find the cases of a dataset, score predictions with :mod:`mattekit.metrics`, report.

Three dataset layouts are recognised (``detect_layout``):

- ``alphamatting``: alphamatting.com training data, ``input_training_lowres/``, ``gt_training_lowres/`` and
  ``trimap_training_lowres/Trimap1|Trimap2/``; every image is a case once per trimap set.
- ``comp1k``: the Composition-1k test set, ``merged/``, ``alpha_copy/`` or ``alpha/``, and ``trimaps/``.
  A composite ``<fg>_<k>`` takes the alpha and trimap of the same name, or else those of ``<fg>`` (the
  original release has one alpha for the twenty composites of a foreground).
- ``plain``: ``image/``, ``trimap/`` and ``alpha/``, paired by file name without extension.

Files that cannot be paired (an image without ground truth, a ground truth no image uses, ...) are never
dropped silently: they are returned as ``problems``, one line each, and the report lists them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS, atomic_save, decode, list_images, read_uint8_channel
from mattekit.metrics import Scores, check_region, score, to_uint8
from mattekit.models import MattingModel
from mattekit.predictor import load_input, run_model
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, read_trimap

LAYOUTS = ("alphamatting", "comp1k", "plain")

_ALPHAMATTING = ("input_training_lowres", "gt_training_lowres", "trimap_training_lowres")
_COMP1K_ALPHA = ("alpha_copy", "alpha")
_PLAIN = ("image", "alpha", "trimap")


@dataclass(frozen=True)
class Case:
    """One thing to score: a ground truth and trimap, with the input image (to predict) or a prediction."""

    name: str
    gt: Path
    trimap: Path
    image: Path | None = None
    pred: Path | None = None
    trimap_set: str = ""


@dataclass(frozen=True)
class Dataset:
    """The cases found in a folder, and the files that could not be paired (one line each)."""

    layout: str
    cases: list[Case]
    problems: list[str]
    trimaps: str


@dataclass(frozen=True)
class Row:
    """The scores of one case; ``seconds`` and ``peak_mb`` (load + predict) only when a model ran."""

    case: Case
    scores: Scores
    seconds: float | None = None
    peak_mb: float | None = None


@dataclass
class Report:
    """Per-case rows, the conventions they follow (for the report header) and the unpaired files."""

    rows: list[Row]
    conventions: dict[str, str]
    problems: list[str] = field(default_factory=list)

    def means(self) -> dict[str, dict[str, float]]:
        """Mean of every column over all rows (``"all"``), and per trimap set when there are several."""
        groups = {"all": self.rows}
        sets = sorted({row.case.trimap_set for row in self.rows})
        if len(sets) > 1:
            groups |= {name: [row for row in self.rows if row.case.trimap_set == name] for name in sets}
        return {name: _mean_columns(rows) for name, rows in groups.items() if rows}


def _columns(row: Row) -> dict[str, float]:
    columns = row.scores.as_dict()
    if row.seconds is not None:
        columns["seconds"] = row.seconds
    if row.peak_mb is not None:
        columns["peak_mb"] = row.peak_mb
    return columns


def _mean_columns(rows: list[Row]) -> dict[str, float]:
    table = [_columns(row) for row in rows]
    return {key: float(np.mean([columns[key] for columns in table])) for key in table[0]}


# --- Finding the cases of a dataset ------------------------------------------------------------------


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MattekitError(f"{path}: no such folder ({what})")
    return path


def _by_stem(folder: Path, problems: list[str]) -> dict[str, Path]:
    """Images of ``folder`` by file name without extension; a stem found twice is a problem."""
    table: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in table:
            problems.append(f"{path}: same name as {table[path.stem].name}; using {table[path.stem].name}")
        else:
            table[path.stem] = path
    return table


def _contents(folder: Path, what: str, problems: list[str]) -> tuple[Path, dict[str, Path]]:
    return folder, _by_stem(_folder(folder, what), problems)


def _foreground(stem: str) -> str | None:
    """``<fg>`` of a Composition-1k composite named ``<fg>_<k>``."""
    match = re.fullmatch(r"(.+)_\d+", stem)
    return match.group(1) if match else None


def _lookup(stem: str, table: dict[str, Path], per_foreground: bool) -> Path | None:
    if stem in table:
        return table[stem]
    fg = _foreground(stem) if per_foreground else None
    return table.get(fg) if fg is not None else None


def _pair(
    items: dict[str, Path],
    gts: tuple[Path, dict[str, Path]],
    trimaps: tuple[Path, dict[str, Path]],
    make: Callable[[str, Path, Path, Path], Case],
    per_foreground: bool,
    problems: list[str],
) -> list[Case]:
    """Cases of every item with both a ground truth and a trimap (each given as folder and contents); the
    other items, and the ground truths and trimaps no item uses, go to ``problems``."""
    cases = []
    used: set[Path | None] = set()
    for stem, path in items.items():
        gt, trimap = _lookup(stem, gts[1], per_foreground), _lookup(stem, trimaps[1], per_foreground)
        used |= {gt, trimap}
        if gt is None:
            problems.append(f"{path}: no ground-truth alpha of that name in {gts[0]}")
        if trimap is None:
            problems.append(f"{path}: no trimap of that name in {trimaps[0]}")
        if gt is not None and trimap is not None:
            cases.append(make(stem, path, gt, trimap))
    for what, (_, table) in (("ground truth", gts), ("trimap", trimaps)):
        problems += [f"{path}: {what} that no file pairs with" for path in table.values() if path not in used]
    return cases


def detect_layout(root: Path) -> str:
    """The layout of a dataset folder (see the module docstring), or a user error saying what is expected."""
    _folder(root, "--data")
    if all((root / name).is_dir() for name in _ALPHAMATTING):
        return "alphamatting"
    comp1k_alpha = any((root / name).is_dir() for name in _COMP1K_ALPHA)
    if comp1k_alpha and (root / "merged").is_dir() and (root / "trimaps").is_dir():
        return "comp1k"
    if all((root / name).is_dir() for name in _PLAIN):
        return "plain"
    raise MattekitError(
        f"{root}: unknown dataset layout; expected {'/, '.join(_ALPHAMATTING)}/ (alphamatting.com), "
        f"merged/, alpha_copy/ or alpha/, trimaps/ (Composition-1k), or image/, trimap/, alpha/"
    )


def find_cases(root: Path, layout: str | None = None, trimap_sets: Iterable[str] | None = None) -> Dataset:
    """Every case of the dataset in ``root``; ``layout`` overrides detection, ``trimap_sets`` picks
    alphamatting.com trimap sets (default: all of them)."""
    layout = layout or detect_layout(root)
    if layout == "alphamatting":
        return _alphamatting(root, trimap_sets)
    if trimap_sets:
        raise MattekitError(f"--trimap-set applies to the alphamatting layout, not {layout}")
    if layout == "comp1k":
        return _comp1k(root)
    if layout == "plain":
        return _plain(root)
    raise MattekitError(f"--layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")


def _input_case(trimap_set: str) -> Callable[[str, Path, Path, Path], Case]:
    prefix = f"{trimap_set}/" if trimap_set else ""

    def make(stem: str, image: Path, gt: Path, trimap: Path) -> Case:
        return Case(f"{prefix}{stem}", gt, trimap, image=image, trimap_set=trimap_set)

    return make


def _alphamatting(root: Path, trimap_sets: Iterable[str] | None) -> Dataset:
    images_dir, gt_dir, trimap_root = (_folder(root / name, "alphamatting layout") for name in _ALPHAMATTING)
    available = sorted(p.name for p in trimap_root.iterdir() if p.is_dir())
    chosen = list(trimap_sets) if trimap_sets else available
    for name in chosen:
        if name not in available:
            found = ", ".join(available) or "none"
            raise MattekitError(f"{trimap_root / name}: no such trimap set; found {found}")
    if not chosen:
        raise MattekitError(f"{trimap_root}: no trimap set folders (Trimap1, Trimap2, ...)")
    problems: list[str] = []
    images, gts = _by_stem(images_dir, problems), (gt_dir, _by_stem(gt_dir, problems))
    cases = []
    for name in chosen:
        trimaps = (trimap_root / name, _by_stem(trimap_root / name, problems))
        cases += _pair(images, gts, trimaps, _input_case(name), False, problems)
    # each trimap set re-checks the same ground truths: report an unused one once
    problems = list(dict.fromkeys(problems))
    return Dataset("alphamatting", cases, problems, ", ".join(chosen) + " (alphamatting.com)")


def _comp1k(root: Path) -> Dataset:
    alpha_dir = next((root / name for name in _COMP1K_ALPHA if (root / name).is_dir()), root / "alpha")
    problems: list[str] = []
    images = _by_stem(_folder(root / "merged", "comp1k layout"), problems)
    gts = _contents(alpha_dir, "comp1k layout", problems)
    trimaps = _contents(root / "trimaps", "comp1k layout", problems)
    cases = _pair(images, gts, trimaps, _input_case(""), True, problems)
    return Dataset("comp1k", cases, problems, f"{root / 'trimaps'} (Composition-1k)")


def _plain(root: Path) -> Dataset:
    problems: list[str] = []
    images = _by_stem(_folder(root / "image", "plain layout"), problems)
    gts = _contents(root / "alpha", "plain layout", problems)
    trimaps = _contents(root / "trimap", "plain layout", problems)
    cases = _pair(images, gts, trimaps, _input_case(""), False, problems)
    return Dataset("plain", cases, problems, str(root / "trimap"))


def pair_predictions(pred_dir: Path, gt_dir: Path, trimap_dir: Path) -> Dataset:
    """Cases of existing predictions, paired with ground truths and trimaps by file name without extension
    (or, Composition-1k style, ``<fg>_<k>`` with ``<fg>``)."""
    problems: list[str] = []
    preds = _by_stem(_folder(pred_dir, "--pred"), problems)
    gts, trimaps = _contents(gt_dir, "--gt", problems), _contents(trimap_dir, "--trimap", problems)

    def make(stem: str, pred: Path, gt: Path, trimap: Path) -> Case:
        return Case(stem, gt, trimap, pred=pred)

    cases = _pair(preds, gts, trimaps, make, True, problems)
    return Dataset("predictions", cases, problems, str(trimap_dir))


# --- Scoring -------------------------------------------------------------------------------------------


def read_alpha(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An alpha matte file as the official ``evaluate.m`` sees it: channel 1 of a multi-channel file
    (``target(:,:,1)``), as 8-bit codes (:func:`mattekit.metrics.to_uint8`; 16-bit files are scaled)."""
    raw = read_uint8_channel(path, max_pixels, ("L", "LA", "RGB", "RGBA"))
    return raw if raw is not None else to_uint8(decode(path, max_pixels).color[..., 0])


def read_scoring_trimap(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A trimap file as :func:`mattekit.trimap.read_trimap` reads it, taken as stored when its grey levels
    are already canonical (0/128/255 only, as benchmark trimaps are), which reads the same."""
    raw = read_uint8_channel(path, max_pixels, ("L", "P"))
    if raw is not None:
        histogram = cv2.calcHist([raw], [0], None, [256], [0, 256]).ravel()
        if not np.delete(histogram, [BACKGROUND, UNKNOWN, FOREGROUND]).any():
            return raw
    return read_trimap(path, max_pixels)


def score_case(case: Case, region: str = "unknown", max_pixels: int = DEFAULT_MAX_PIXELS) -> Row:
    """Read a case's prediction, ground truth and trimap and score them."""
    if case.pred is None:
        raise ValueError(f"{case.name}: no prediction to score")
    pred, gt = read_alpha(case.pred, max_pixels), read_alpha(case.gt, max_pixels)
    trimap = read_scoring_trimap(case.trimap, max_pixels)
    return Row(case, score(pred, gt, trimap, region, name=str(case.pred)))


def score_cases(
    cases: list[Case],
    region: str = "unknown",
    jobs: int | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Score existing predictions, ``jobs`` cases at a time (default: one per CPU core).

    Threads suffice: decoding and OpenCV's filters and labelling release the GIL.
    """
    jobs = jobs or os.cpu_count() or 1
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(cases)))) as pool:
        for row in pool.map(lambda case: score_case(case, region), cases):
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


class _PeakMemory:
    """Peak memory while one image is processed: CUDA's peak allocation for a model on a GPU; on the CPU
    the process's peak resident set size (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``), or,
    where it cannot be reset, the lifetime peak (``ru_maxrss``, an upper bound).

    The absolute peak is reported, not the growth over the image: an image whose arrays fit in memory
    that an earlier image freed shows no growth at all, yet it needed that memory.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.resettable = not self.cuda and _reset_peak_rss()
        if self.cuda:
            self.method = "peak GPU memory allocated (torch.cuda.max_memory_allocated, reset per image)"
        elif self.resettable:
            self.method = "peak RSS of the process (Linux VmHWM, reset before each image)"
        else:
            self.method = "lifetime peak RSS of the process (getrusage ru_maxrss; an upper bound)"

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        elif self.resettable:
            _reset_peak_rss()

    def peak_mb(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        if self.resettable:
            return _proc_status_kb("VmHWM") / 2**10
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, kB on Linux


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _proc_status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise MattekitError(f"/proc/self/status has no {key} line")


def predict_and_score(
    cases: list[Case],
    model: MattingModel,
    region: str = "unknown",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_row: Callable[[Row], None] | None = None,
    trim_trimap: bool = False,
) -> tuple[list[Row], str]:
    """Run ``model`` on every case and score the 8-bit matte ``mattekit predict`` would write for it.

    Returns the rows and how memory was measured.  ``seconds`` and ``peak_mb`` cover decoding the input
    and predicting (with ``trim_trimap``, trimming too), not scoring; the score is always over the
    case's own trimap.
    """
    meter = _PeakMemory(str(getattr(model, "device", "cpu")))
    rows = []
    for case in cases:
        if case.image is None:
            raise ValueError(f"{case.name}: no input image to predict from")
        meter.start()
        begin = time.perf_counter()
        data = load_input(case.image, case.trimap, max_pixels)
        alpha = run_model(model, data, trim_trimap=trim_trimap)
        seconds = time.perf_counter() - begin
        peak = meter.peak_mb()
        gt = read_alpha(case.gt, max_pixels)
        row = Row(case, score(to_uint8(alpha), gt, data.trimap, region, name=str(case.gt)), seconds, peak)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows, meter.method


# --- Whole evaluations and their files -----------------------------------------------------------------


def _conventions(region: str, trimaps: str) -> dict[str, str]:
    check_region(region)
    return {
        "metrics": "official DIM evaluation code (Xu et al. 2017); SAD, Grad, Conn divided by 1000",
        "mse": "mean of squared alpha error with alpha in [0, 1] (not scaled)",
        "region": "unknown (trimap == 128), as the official code" if region == "unknown" else "full image",
        "alphas": "8-bit, channel 1 of multi-channel files; float mattes rounded rint(alpha * 255)",
        "trimaps": trimaps,
    }


def evaluate_predictions(
    dataset: Dataset,
    region: str = "unknown",
    jobs: int | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> Report:
    """Score the existing predictions of ``dataset`` (from :func:`pair_predictions`)."""
    conventions = _conventions(region, dataset.trimaps)
    _require_cases(dataset)
    return Report(score_cases(dataset.cases, region, jobs, on_row), conventions, dataset.problems)


def evaluate_model(
    dataset: Dataset,
    model: MattingModel,
    model_name: str,
    region: str = "unknown",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_row: Callable[[Row], None] | None = None,
    trim_trimap: bool = False,
) -> Report:
    """Predict every case of ``dataset`` (from :func:`find_cases`) with ``model`` and score the results."""
    conventions = _conventions(region, dataset.trimaps)
    _require_cases(dataset)
    rows, memory = predict_and_score(dataset.cases, model, region, max_pixels, on_row, trim_trimap)
    conventions |= {
        "layout": dataset.layout,
        "model": model_name,
        "trimming": "patch-based (mattekit.trimap.trim) before predicting" if trim_trimap else "none",
        "seconds": "per image: decoding the input and predicting (scoring excluded)",
        "memory": f"per image: {memory}",
    }
    return Report(rows, conventions, dataset.problems)


def _require_cases(dataset: Dataset) -> None:
    if not dataset.cases:
        first = f": {dataset.problems[0]}" if dataset.problems else ""
        raise MattekitError(f"nothing to evaluate (no file with both a ground truth and a trimap){first}")


def _record(row: Row) -> dict[str, object]:
    case = row.case
    paths = {"image": case.image, "pred": case.pred, "gt": case.gt, "trimap": case.trimap}
    record: dict[str, object] = {"name": case.name, "trimap_set": case.trimap_set}
    record |= {key: str(path) for key, path in paths.items() if path is not None}
    record |= {key: _finite(value) for key, value in _columns(row).items()}
    return record


def _finite(value: float) -> float | None:
    """JSON has no NaN (MSE of an empty region is NaN, as in the official code): write null."""
    return None if math.isnan(value) else value


def write_json(report: Report, path: Path) -> None:
    """The conventions, means, per-case rows and unpaired files as JSON, written atomically."""
    document = {
        "conventions": report.conventions,
        "mean": {name: {k: _finite(v) for k, v in means.items()} for name, means in report.means().items()},
        "rows": [_record(row) for row in report.rows],
        "problems": report.problems,
    }
    text = json.dumps(document, indent=2) + "\n"
    atomic_save(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_csv(report: Report, path: Path) -> None:
    """One line per case (name, trimap set, files, metrics, and seconds / peak_mb when a model ran),
    written atomically."""
    records = [_record(row) for row in report.rows]
    fields = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    text = buffer.getvalue()
    atomic_save(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
