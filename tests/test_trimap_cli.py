"""``mattekit trimap``: trimaps from masks and from GrabCut boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mattekit.cli import main
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, from_mask, read_trimap


def _disk(size: int = 120, radius: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2).astype(np.float32)


def test_band_has_the_asked_width() -> None:
    trimap = from_mask(_disk(), erode=5, dilate=8)
    row = trimap[60]  # through the centre: background, unknown, foreground, unknown, background
    unknown = np.flatnonzero(row == UNKNOWN)
    left_band = unknown[unknown < 60]
    # The disk edge is at x = 30: the band runs from 30 - 8 to 30 + 5 (one pixel of discretisation).
    assert abs(left_band.min() - 22) <= 1 and abs(left_band.max() - 34) <= 1
    assert trimap[60, 60] == FOREGROUND and trimap[0, 0] == BACKGROUND


def test_trimap_command_from_a_mask_and_from_a_box(tmp_path: Path) -> None:
    disk = _disk()
    photo = np.where(disk[..., None] > 0, [220, 40, 40], [30, 120, 200]).astype(np.uint8)
    noise = np.random.default_rng(1).integers(0, 20, photo.shape, dtype=np.uint8)
    Image.fromarray(photo + noise).save(tmp_path / "photo.png")
    Image.fromarray((disk * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    assert main(["trimap", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"),
                 "-o", str(tmp_path / "from_mask.png")]) == 0
    assert np.array_equal(read_trimap(tmp_path / "from_mask.png"), from_mask(disk, 10, 10))
    assert main(["trimap", str(tmp_path / "photo.png"), "--rect", "20,20,80,80",
                 "-o", str(tmp_path / "from_box.png")]) == 0
    grabcut = read_trimap(tmp_path / "from_box.png")
    # GrabCut finds the red disk inside the box: it agrees with the true mask's trimap almost everywhere.
    assert np.mean(grabcut == from_mask(disk, 10, 10)) > 0.97


def test_trimap_command_errors_are_one_line(tmp_path: Path, capsys) -> None:
    Image.new("RGB", (50, 40)).save(tmp_path / "photo.png")
    Image.new("L", (20, 20)).save(tmp_path / "mask.png")
    cases = [
        (["--rect", "10,10,100,10"], "does not lie inside the 50x40 image"),
        (["--rect", "a,b"], "expected x,y,width,height"),
        (["--mask", str(tmp_path / "mask.png")], "mask is 20x20, image is 50x40"),
        ([], "give exactly one of --mask and --rect"),
    ]
    for extra, message in cases:
        code = main(["trimap", str(tmp_path / "photo.png"), "-o", str(tmp_path / "t.png"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t.png").exists()
