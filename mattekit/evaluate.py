"""Benchmark evaluation: find the cases of a dataset, score predictions with :mod:`mattekit.metrics`, report.

Three dataset layouts are recognised (``detect_layout``):

- ``alphamatting``: alphamatting.com training data, ``input_training_lowres/``, ``gt_training_lowres/`` and
  ``trimap_training_lowres/Trimap1|Trimap2/``; every image is a case once per trimap set.
- ``comp1k``: the Composition-1k test set, ``merged/``, ``alpha_copy/`` or ``alpha/``, and ``trimaps/``.
  A composite ``<fg>_<k>`` takes the alpha and trimap of the same name, or else those of ``<fg>`` (the
  original release has one alpha for the twenty composites of a foreground).
- ``plain``: ``image/``, ``trimap/`` and ``alpha/``, paired by file name without extension.

Files that cannot be paired (an image without ground truth, a ground truth no image uses, ...) are never
dropped silently: they are returned as ``problems``, one line each, and the report lists them (the CLI
exits 1 unless ``--allow-unpaired``).  A case that cannot be scored (an unreadable file, sizes that differ)
is a ``failure`` of the report and the others are still scored.

``--pred`` pairs what ``mattekit predict`` writes: ``<stem>_alpha.png`` is the prediction of ``<stem>``,
and its ``<stem>_rgba.png`` / ``<stem>_composite.png`` beside it are not mattes and are left out.
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

from mattekit.errors import MattekitError, describe
from mattekit.io import (
    DEFAULT_MAX_PIXELS,
    atomic_save,
    check_writable_folders,
    decode,
    image_size,
    list_images,
    read_uint8_channel,
    refuse_overwrite,
    same_file,
)
from mattekit.metrics import (
    Scores,
    TrimapScores,
    check_region,
    ground_truth_trimap,
    score,
    to_uint8,
    trimap_confusion,
    trimap_scores,
)
from mattekit.models import MattingModel
from mattekit.predictor import load_input, run_model
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, TrimMethod, read_trimap

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
    """Per-case rows, the conventions they follow (for the report header), the unpaired files and the
    cases that could not be scored (one line each)."""

    rows: list[Row]
    conventions: dict[str, str]
    problems: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

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
    if same_file(pred_dir, gt_dir):
        raise MattekitError(f"--pred {pred_dir} and --gt {gt_dir} are one folder: each file would be scored "
                            f"against itself")
    problems: list[str] = []
    gts, trimaps = _contents(gt_dir, "--gt", problems), _contents(trimap_dir, "--trimap", problems)
    preds = _prediction_stems(_by_stem(_folder(pred_dir, "--pred"), problems), gts[1], problems)

    def make(stem: str, pred: Path, gt: Path, trimap: Path) -> Case:
        return Case(stem, gt, trimap, pred=pred)

    cases = _pair(preds, gts, trimaps, make, True, problems)
    return Dataset("predictions", cases, problems, str(trimap_dir))


#: What ``mattekit predict`` appends to an input's stem (docs/predict.md).
_PREDICT_OUTPUTS = ("_alpha", "_rgba", "_composite")


def _prediction_stems(preds: dict[str, Path], gts: dict[str, Path], problems: list[str]) -> dict[str, Path]:
    """Predictions by the stem they predict: ``GT01_alpha`` is ``GT01`` (unless a ground truth is itself
    named ``GT01_alpha``); ``GT01_rgba`` and ``GT01_composite`` beside a ``GT01_alpha`` are not mattes and
    are left out (alone, they keep their name and so pair with nothing, which is reported)."""
    named: dict[str, Path] = {}
    for stem, path in preds.items():
        base, suffix = _split_suffix(stem)
        if suffix is not None and suffix != "_alpha" and f"{base}_alpha" in preds:
            continue  # predict's cutout or composite beside its alpha
        key = base if suffix == "_alpha" and stem not in gts else stem
        if key in named:
            problems.append(f"{path}: predicts the same image as {named[key].name}; using {named[key].name}")
            continue
        named[key] = path
    return named


def _split_suffix(stem: str) -> tuple[str, str | None]:
    for suffix in _PREDICT_OUTPUTS:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)], suffix
    return stem, None


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
    """Read a case's prediction, ground truth and trimap and score them (sizes compared from the headers,
    before anything is decoded)."""
    if case.pred is None:
        raise ValueError(f"{case.name}: no prediction to score")
    _check_sizes(case.pred, case.gt, case.trimap, max_pixels)
    pred, gt = read_alpha(case.pred, max_pixels), read_alpha(case.gt, max_pixels)
    trimap = read_scoring_trimap(case.trimap, max_pixels)
    return Row(case, score(pred, gt, trimap, region, name=str(case.pred)))


def _check_sizes(pred: Path, gt: Path, trimap: Path, max_pixels: int) -> None:
    sizes = {what: image_size(path, max_pixels) for what, path in
             (("prediction", pred), ("ground truth", gt), ("trimap", trimap))}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{what} {width}x{height}" for what, (width, height) in sizes.items())
        raise MattekitError(f"{pred}: sizes differ ({listed})")


def _attempt(case: Case, work: Callable[[Case], Row], failures: list[str] | None) -> Row | None:
    """``work(case)``; with a ``failures`` list, a failure of any kind is one line there instead."""
    if failures is None:
        return work(case)
    try:
        return work(case)
    except Exception as err:  # one case's problem: the others are still scored
        failures.append(f"{case.pred or case.image}: {describe(err)}")
        return None


def score_cases(
    cases: list[Case],
    region: str = "unknown",
    jobs: int | None = None,
    on_row: Callable[[Row], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    failures: list[str] | None = None,
) -> list[Row]:
    """Score existing predictions, ``jobs`` cases at a time (default: one per CPU core).  A case that
    fails raises, or, when a ``failures`` list is given, is recorded there and the others go on.

    Threads suffice: decoding and OpenCV's filters and labelling release the GIL.
    """
    jobs = jobs or os.cpu_count() or 1
    rows = []

    def work(case: Case) -> Row:
        return score_case(case, region, max_pixels)

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(cases)))) as pool:
        for row in pool.map(lambda case: _attempt(case, work, failures), cases):
            if row is None:
                continue
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
    failures: list[str] | None = None,
    image_only: bool = False,
    trim_trimap: bool | TrimMethod = False,
) -> tuple[list[Row], str]:
    """Run ``model`` on every case and score the 8-bit matte ``mattekit predict`` would write for it.

    ``image_only`` runs a trimap-free model on the image alone (the trimap then only picks the scored
    region), as trimap-free papers evaluate; otherwise the trimap goes to the model and fixes the known
    regions; ``trim_trimap`` trims it first (the score is always over the case's own trimap).  Returns the
    rows and how memory was measured.  ``seconds`` and ``peak_mb`` cover decoding the input and predicting
    (trimming included), not scoring.  A case that fails raises, or, when a ``failures`` list is given, is
    recorded there and the others go on.
    """
    if image_only and model.requirements.trimap:
        raise MattekitError("--image-only: this model needs a trimap")
    meter = _PeakMemory(str(getattr(model, "device", "cpu")))
    rows = []

    def work(case: Case) -> Row:
        if case.image is None:
            raise ValueError(f"{case.name}: no input image to predict from")
        if image_size(case.gt, max_pixels) != image_size(case.image, max_pixels):  # before any decoding
            raise MattekitError(f"{case.gt}: the ground truth is not the size of {case.image}")
        meter.start()
        begin = time.perf_counter()
        data = load_input(case.image, None if image_only else case.trimap, max_pixels)
        alpha = run_model(model, data, trim_trimap=trim_trimap)
        seconds = time.perf_counter() - begin
        peak = meter.peak_mb()
        gt = read_alpha(case.gt, max_pixels)
        trimap = read_scoring_trimap(case.trimap, max_pixels) if image_only else data.trimap
        return Row(case, score(to_uint8(alpha), gt, trimap, region, name=str(case.gt)), seconds, peak)

    for case in cases:
        row = _attempt(case, work, failures)
        if row is None:
            continue
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows, meter.method


def refuse_overwriting_cases(dataset: Dataset, outputs: Iterable[Path | None]) -> None:
    """A one-line error, before any work, if a report file would replace one of the dataset's files or
    cannot be written."""
    inputs = [path for case in dataset.cases for path in (case.image, case.pred, case.gt, case.trimap)]
    files = [path for path in outputs if path is not None]
    refuse_overwrite(inputs, files)
    check_writable_folders(files)
    for path in files:
        if path.is_dir():
            raise MattekitError(f"cannot write {path}: a folder of that name is in the way")


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
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Report:
    """Score the existing predictions of ``dataset`` (from :func:`pair_predictions`); cases that fail are
    the report's ``failures``."""
    conventions = _conventions(region, dataset.trimaps)
    _require_cases(dataset)
    failures: list[str] = []
    rows = score_cases(dataset.cases, region, jobs, on_row, max_pixels, failures)
    return _report(rows, conventions, dataset, failures)


def _report(rows: list[Row], conventions: dict[str, str], dataset: Dataset, failures: list[str]) -> Report:
    if not rows:
        raise MattekitError(f"no case could be scored; the first failure: {failures[0]}")
    return Report(rows, conventions, dataset.problems, failures)


def evaluate_model(
    dataset: Dataset,
    model: MattingModel,
    model_name: str,
    region: str = "unknown",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_row: Callable[[Row], None] | None = None,
    image_only: bool = False,
    trim_trimap: bool | TrimMethod = False,
) -> Report:
    """Predict every case of ``dataset`` (from :func:`find_cases`) with ``model`` and score the results;
    ``image_only`` and ``trim_trimap``: see :func:`predict_and_score`."""
    conventions = _conventions(region, dataset.trimaps)
    _require_cases(dataset)
    failures: list[str] = []
    rows, memory = predict_and_score(
        dataset.cases, model, region, max_pixels, on_row, failures, image_only, trim_trimap
    )
    conventions |= {
        "layout": dataset.layout,
        "model": model_name,
        "model input": "the image alone (no trimap)" if image_only else "the image and its trimap",
        "trimming": (f"{'edges' if trim_trimap is True else trim_trimap} (mattekit.trimap.trim) before "
                     "predicting" if trim_trimap else "none"),
        "seconds": "per image: decoding the input and predicting (scoring excluded)",
        "memory": f"per image: {memory}",
    }
    return _report(rows, conventions, dataset, failures)


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
        "failures": report.failures,
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


# --- Trimaps (TGN, SPAMattNet Table I) -------------------------------------------------------------------


@dataclass(frozen=True)
class TrimapReport:
    """Per-trimap scores, the dataset's pooled scores (one confusion matrix over every pixel, as Table I's
    segmentation metrics are usually counted) and the files that could not be paired."""

    rows: list[tuple[str, TrimapScores]]
    pooled: TrimapScores
    problems: list[str]


def evaluate_trimaps(pred_dir: Path, gt_dir: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> TrimapReport:
    """Score predicted trimaps against ground-truth alphas, paired by file name without extension (a
    trimap suffix such as ``_trimap`` is ignored): each alpha becomes TGN's ground-truth trimap (15x15
    kernel, :func:`mattekit.metrics.ground_truth_trimap`)."""
    from mattekit.batch import trimap_stem

    problems: list[str] = []
    preds = {trimap_stem(path): path for path in _by_stem(_folder(pred_dir, "--trimaps"), problems).values()}
    gts = _by_stem(_folder(gt_dir, "--gt"), problems)
    rows, total = [], np.zeros((3, 3), np.int64)
    for stem, path in sorted(preds.items()):
        if stem not in gts:
            problems.append(f"{path}: no ground-truth alpha of that name in {gt_dir}")
            continue
        truth = ground_truth_trimap(read_alpha(gts[stem], max_pixels))
        confusion = trimap_confusion(read_scoring_trimap(path, max_pixels), truth)
        total += confusion
        rows.append((stem, trimap_scores(confusion)))
    unused = [path for stem, path in gts.items() if stem not in preds]
    problems += [f"{path}: ground truth that no trimap pairs with" for path in unused]
    if not rows:
        raise MattekitError(f"nothing to evaluate: no trimap in {pred_dir} has a ground truth in {gt_dir}")
    return TrimapReport(rows, trimap_scores(total), problems)
