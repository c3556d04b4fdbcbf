"""Folder batches on several cores (``--jobs``) and across machines (``--shard K/N``) (issue 15, point 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from test_cli_predict import _crop_pair

from mattekit.batch import ModelRecipe, OutputOptions, in_shard, parse_shard, plan_folder, run_batch
from mattekit.cli import main
from mattekit.errors import MattekitError

NAMES = ["GT01", "GT02", "GT03", "GT04", "GT05", "GT06"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, dev_dir: Path) -> Path:
    """Six real crops with their trimaps, a truncated photo and a photo without a trimap."""
    folder = tmp_path_factory.mktemp("batch")
    for name in NAMES:
        _crop_pair(dev_dir, name, folder, size=96)
    (folder / "GT03.png").write_bytes((folder / "GT03.png").read_bytes()[:300])  # truncated
    Image.new("RGB", (10, 10)).save(folder / "lonely.png")
    return folder


def test_jobs_keep_order_failures_and_outputs(folder: Path, tmp_path: Path) -> None:
    options = OutputOptions()
    jobs, _ = plan_folder(folder, folder, tmp_path / "one", options)
    one = list(run_batch(jobs, ModelRecipe("knn", {})(), options, workers=1))
    jobs_two, _ = plan_folder(folder, folder, tmp_path / "two", options)
    two = list(run_batch(jobs_two, ModelRecipe("knn", {}), options, workers=2))
    assert [r.job.image.name for r in two] == [job.image.name for job in jobs]  # input order
    assert [(r.status, r.reason) for r in two] == [(r.status, r.reason) for r in one]
    assert [r.status for r in two].count("failed") == 1 and "GT03" in next(
        r.job.image.name for r in two if r.status == "failed"
    )
    for result in one:  # the same solver on the same pixels: the same file, byte for byte
        if result.status == "written":
            name = result.job.outputs["alpha"].name
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert not list((tmp_path / "two").glob(".*"))  # no temporary file left behind


def test_three_shards_cover_the_folder_once(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    reported: list[str] = []
    for k in range(3):
        code = main(["predict", str(folder), "-t", str(folder), "-o", str(out), "--model", "knn",
                     "--shard", f"{k}/3", "--jobs", "1"])
        err = capsys.readouterr().err
        reported += [name for name in ("GT03.png", "lonely.png") if name in err]
        assert code == (1 if any(in_shard(folder / n, k, 3) for n in ("GT03.png", "lonely.png")) else 0)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{n}_alpha.png" for n in NAMES if n != "GT03")  # the whole folder
    assert sorted(reported) == ["GT03.png", "lonely.png"]  # each failure reported by one shard only
    owners = [[k for k in range(3) if in_shard(folder / f"{n}.png", k, 3)] for n in NAMES]
    assert all(len(o) == 1 for o in owners) and len({o[0] for o in owners}) > 1  # once each, spread out


def test_shard_spec_is_checked() -> None:
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "0/0"):
        with pytest.raises(MattekitError, match="--shard"):
            parse_shard(bad)
