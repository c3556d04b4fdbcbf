"""The trainer: recipes, schedules, exact resume, pre-emption, NaN stops, logging, export, DDP.

Most runs use the tiny task of train_tiny.py (the trainer's machinery at a fraction of GCA's cost); the
end-to-end test trains the real GCA for two steps and loads the result with ``mattekit predict``.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor
from train_tiny import NAME, TinyTask, make_composition, make_validation, tiny_recipe_file

from mattekit.cli import main
from mattekit.errors import MattekitError
from mattekit.evaluate import find_cases, predict_and_score
from mattekit.metrics import score
from mattekit.train import load_recipe
from mattekit.train.data import TrainingSet, extract_foregrounds, find_source
from mattekit.train.losses import normalize, one_hot
from mattekit.train.optim import lr_factor
from mattekit.train.task import StepContext, get_task, register_task
from mattekit.train.trainer import Distributed, NonFiniteLoss, _Context, train

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def data_dir(dev_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_composition(dev_dir, tmp_path_factory.mktemp("train-data"))


@pytest.fixture(scope="module")
def val_dir(dev_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_validation(dev_dir, tmp_path_factory.mktemp("val-data"))


def _tiny(tmp_path: Path, *settings: str, **keys: object):
    return load_recipe(str(tiny_recipe_file(tmp_path / "tiny.toml", **keys)), list(settings))


# --- recipes ----------------------------------------------------------------------------------------------


def test_builtin_recipes_record_the_official_settings() -> None:
    gca, hop = load_recipe("gca"), load_recipe("hop")
    # NOTES.md 1.4 [code]: 4 x 10, Adam 4e-4 (0.5, 0.999), 5k warmup, cosine to 200k, clip 2x running norm
    assert (gca.lr, gca.betas, gca.batch_size, gca.steps, gca.warmup_steps) == (
        4e-4,
        (0.5, 0.999),
        10,
        200_000,
        5000,
    )
    assert (gca.schedule, gca.clip, gca.clip_value, gca.weight_decay, gca.sync_bn) == (
        "cosine",
        "running",
        2.0,
        0.0,
        True,
    )
    assert gca.data.erosion == (1, 29) and gca.data.merge_prob == 0.5 and gca.data.resize_prob == 0.25
    # HOP-9x9-RI.toml: lr 6.4e-4, 14 per GPU, fp16, random interpolation, BN eps 1e-3
    assert (hop.task, hop.lr, hop.batch_size, hop.amp, hop.data.interpolation) == (
        "hop",
        6.4e-4,
        14,
        "fp16",
        "random",
    )
    assert hop.options.bn_eps == 1e-3


def test_cli_print_set_and_unknown_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "gca", "--print", "--set", "lr=1e-4", "--set", "data.hue=20"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.toml").write_text(printed)
    again = load_recipe(str(tmp_path / "printed.toml"))
    assert again == load_recipe("gca", ["lr=1e-4", "data.hue=20"]) and again.lr == 1e-4
    assert main(["train", "gca", "--print", "--set", "lerning_rate=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) 'lerning_rate'" in err and "Traceback" not in err
    assert main(["train", "gca", "--print", "--set", "options.bn_eps=1e-3"]) == 2
    assert "options table: unknown key(s) 'bn_eps'; it takes none" in capsys.readouterr().err
    assert main(["train", "nope", "--print"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


def test_warmup_cosine_matches_the_official_schedule() -> None:
    """The official trainer: lr (step+1)/W during warmup, then CosineAnnealingLR(T = total - W).step()."""
    recipe = load_recipe("gca", ["steps=40", "warmup_steps=10", "lr=1.0"])
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1.0)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30)
    for step in range(40):
        if step < 10:
            expected = (step + 1) / 10
        else:
            optimizer.step()  # (no gradient: nothing moves; keeps torch's order check quiet)
            cosine.step()
            expected = optimizer.param_groups[0]["lr"]
        assert math.isclose(lr_factor(step, recipe), expected, rel_tol=1e-9, abs_tol=1e-12), step


# --- the run ----------------------------------------------------------------------------------------------


def _weights(run: Path) -> dict[str, Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["modules"]["generator"]


def test_resume_continues_bit_for_bit(tmp_path: Path, data_dir: Path) -> None:
    recipe = _tiny(tmp_path, steps=6, save_every=100)
    whole = train(recipe, data_dir, tmp_path / "whole", quiet=True)
    assert whole.step == 6 and whole.model is not None
    first = train(recipe, data_dir, tmp_path / "split", stop_at=3, quiet=True)
    assert first.step == 3 and first.model is None
    second = train(recipe, data_dir, tmp_path / "split", resume=True, quiet=True)
    assert second.step == 6
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    whole_state = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    split_state = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert (
        whole_state["optimizers"]["generator"]["clipper"] == split_state["optimizers"]["generator"]["clipper"]
    )
    with (tmp_path / "split" / "metrics.csv").open() as stream:
        steps = [int(row["step"]) for row in csv.DictReader(stream)]
    assert steps == [1, 2, 3, 4, 5, 6]  # one row per logged step, none twice after the resume


def test_resume_refuses_a_changed_recipe_and_an_occupied_run_dir(tmp_path: Path, data_dir: Path) -> None:
    recipe = _tiny(tmp_path, steps=2)
    train(recipe, data_dir, tmp_path / "run", stop_at=1, quiet=True)
    with pytest.raises(MattekitError, match="holds a run already"):
        train(recipe, data_dir, tmp_path / "run", quiet=True)
    with pytest.raises(MattekitError, match=r"different recipe \(changed: lr\)"):
        train(_tiny(tmp_path, "lr=1e-3", steps=2), data_dir, tmp_path / "run", resume=True, quiet=True)


class _Poisoned(TinyTask):
    """The tiny task whose loss turns NaN at step 2, or which is pre-empted (SIGTERM) during step 1."""

    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        if self.options_mode == "sigterm" and ctx.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.options_mode == "nan" and ctx.step == 2:
            batch = {**batch, "alpha": batch["alpha"] * math.nan}
        return super().training_step(batch, ctx)


def _poisoned(mode: str) -> str:
    name = f"tiny-{mode}"
    from mattekit.train.task import list_tasks

    if name not in list_tasks():
        register_task(name)(type(f"Tiny{mode}", (_Poisoned,), {"options_mode": mode}))
    return name


def test_nan_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    recipe = _tiny(tmp_path, f'task="{_poisoned("nan")}"', steps=5, save_every=1)
    with pytest.raises(NonFiniteLoss, match="step 2: the generator loss is nan"):
        train(recipe, data_dir, tmp_path / "run", quiet=True)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["modules"]["generator"].values())
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_sigterm_saves_and_stops_cleanly(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe_file = tiny_recipe_file(tmp_path / "r.toml", task=_poisoned("sigterm"), steps=50, save_every=100)
    status = main(
        ["train", str(recipe_file), "--data", str(data_dir), "-o", str(tmp_path / "run"), "--device", "cpu"]
    )
    assert status == 143
    assert "stopped at step 2" in capsys.readouterr().err
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is not None  # the trainer's handler is gone again
    assert not list((tmp_path / "run" / "checkpoints").glob("*.part"))


def test_sigterm_to_the_whole_job_with_workers_saves(tmp_path: Path, data_dir: Path) -> None:
    """A cluster pre-empts by signalling every process of the job, DataLoader workers included."""
    recipe = tiny_recipe_file(tmp_path / "r.toml", steps=100000, workers=1, save_every=100000)
    run = tmp_path / "run"
    job = subprocess.Popen(
        [sys.executable, str(TESTS / "train_ddp_run.py"), str(recipe), str(data_dir), str(run)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").is_file() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGTERM)
    output = job.communicate(timeout=120)[0]
    assert job.returncode == 143, output
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] >= 1 and state["data_position"] == state["step"] * 2


# --- GCA learns ------------------------------------------------------------------------------------------


@pytest.fixture()
def one_thread() -> object:
    """One intra-op thread: on a shared, loaded CPU, two spinning OpenMP threads run GCA 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _composition_from_dev(dev_dir: Path, root: Path, names: tuple[str, ...], backgrounds: int) -> Path:
    """fg/ alpha/ bg/ in ``root``: foregrounds estimated (pymatting) from dev photos and their ground truth
    at 96 px, over ``backgrounds`` alphamatting.com test photos at 96 x 72 (other real pictures)."""
    extract_foregrounds(
        [dev_dir / "input_training_lowres" / f"{name}.png" for name in names],
        [dev_dir / "gt_training_lowres" / f"{name}.png" for name in names],
        root,
        max_side=96,
    )
    torch.set_num_threads(1)  # pymatting's numba kernels reset OpenMP's thread count (to 2 here)
    (root / "bg").mkdir()
    for path in sorted((dev_dir.parent / "alphamatting-test" / "input_lowres").glob("*.png"))[:backgrounds]:
        photo = cv2.imread(str(path))
        cv2.imwrite(str(root / "bg" / path.name), cv2.resize(photo, (96, 72), interpolation=cv2.INTER_AREA))
    return root


def _gca_context(task, seed: int = 0) -> _Context:  # noqa: ANN001  (a Task)
    """The trainer's step context for the task's freshly built (``seed``) networks on one CPU process."""
    torch.manual_seed(seed)
    modules = task.build_modules()
    cpu = torch.device("cpu")
    return _Context(
        modules,
        task.configure_optimizers(modules),
        cpu,
        None,
        torch.amp.GradScaler("cuda", enabled=False),
        Distributed(0, 1, 0, cpu),
    )


def test_gca_overfits_a_real_composite(tmp_path: Path, dev_dir: Path, one_thread: object) -> None:
    """The GCA task's own step, optimiser and clipping on two 32 px crops of a dev photo's estimated
    foreground (pymatting) over another real photo: the unknown-region L1 falls from 0.40 to 0.14 in five
    steps and the crops' mean SAD from 0.250 to 0.069 (measured, one thread; the bounds, a halving and
    SAD < 0.12, leave room).  The longer curve is benchmarks/train.py overfit."""
    root = tmp_path / "data"
    extract_foregrounds(
        [dev_dir / "input_training_lowres" / "GT02.png"],
        [dev_dir / "gt_training_lowres" / "GT02.png"],
        root,
        max_side=96,
    )
    torch.set_num_threads(1)  # pymatting's numba kernels reset OpenMP's thread count (to 2 here)
    (root / "bg").mkdir()
    doll = cv2.imread(str(dev_dir.parent / "alphamatting-test" / "input_lowres" / "doll.png"))
    cv2.imwrite(str(root / "bg" / "doll.png"), cv2.resize(doll, (96, 72), interpolation=cv2.INTER_AREA))
    settings = ["crop_size=32", 'schedule="constant"', "warmup_steps=0", "data.merge_prob=0.0"]
    recipe = load_recipe("gca", settings)
    task = get_task("gca")(recipe)
    dataset = TrainingSet(find_source(root, recipe.data), recipe, task)
    pair = [dataset[(epoch, 0)] for epoch in (0, 1)]
    batch = {key: torch.from_numpy(np.stack([p[key] for p in pair])) for key in pair[0]}
    assert (batch["trimap"] == 128).sum() > 500  # crops centred on the hair's unknown band
    ctx = _gca_context(task)
    net = ctx.models["generator"]

    def sad() -> float:
        """Mean SAD (thousands, unknown region) of the crops' mattes, from a forward as training runs it."""
        with torch.no_grad():
            pred = net(normalize(batch["image"]), one_hot(batch["trimap"]))
        fields = (pred, batch["alpha"], batch["trimap"])
        pairs = zip(*(field[:, 0].numpy() for field in fields), strict=True)
        return float(np.mean([score(p, a, t).sad for p, a, t in pairs]))

    before = sad()
    losses = []
    for step in range(5):
        ctx.step = step
        losses.append(float(task.training_step(batch, ctx)["loss"].detach()))
    after = sad()
    assert losses[-1] < 0.5 * losses[0], losses
    assert after < 0.12, (before, after)


#: Seeds of the held-out test: the suite runs seed 0; ``MATTEKIT_LEARN_SEEDS=0,1,2`` measures others.
LEARN_SEEDS = [int(seed) for seed in os.environ.get("MATTEKIT_LEARN_SEEDS", "0").split(",")]


@pytest.mark.parametrize("seed", LEARN_SEEDS)
def test_gca_learns_mattes_of_held_out_photos(
    tmp_path: Path, dev_dir: Path, one_thread: object, seed: int
) -> None:
    """Item 7's held-out check: the full GCA network, its task's step, Adam and clipping, trained for 30
    steps of batch 4 on 64 px crops the data chain composites on the fly (four dev photos' estimated
    foregrounds over three other real photos), scored as validation scores (``predict_and_score``: the
    8-bit matte ``mattekit predict`` writes, SAD over Trimap1's unknown region) on two photos it never
    sees, GT08 and GT09 at 96 x 64.  The recipe's own schedule runs over the run's 30 steps (2 warmup,
    cosine to zero): stopped at peak lr, the held-out SAD of a 30-step run was a snapshot of a noisy
    walk (seed 0 went 0.489 -> 0.322 with OpenCV 5 and -> 0.482 with OpenCV 4, whose warpAffine
    rounds differently).  Annealed, measured over seeds 0-5 in both environments (docs/benchmarks.md,
    "Training"): mean SAD 0.49-0.50 at initialisation (the trimap-only answer, 0.5 in the unknown
    region: 0.488), falls by 0.117-0.163; the test asserts half the smallest fall."""
    root = _composition_from_dev(dev_dir, tmp_path / "data", ("GT01", "GT02", "GT04", "GT05"), 3)
    val = make_validation(dev_dir, tmp_path / "val", names=("GT08", "GT09"), size=(96, 64))
    steps, batch_size = 30, 4
    recipe = load_recipe("gca", ["crop_size=64", f"steps={steps}", "warmup_steps=2", f"seed={seed}"])
    task = get_task("gca")(recipe)
    dataset = TrainingSet(find_source(root, recipe.data), recipe, task)
    cases = find_cases(val).cases
    ctx = _gca_context(task, seed)
    net = ctx.models["generator"]

    def held_out_sad() -> float:
        rows, _ = predict_and_score(cases, task.inference_model(net, ctx.device))
        net.train()
        return float(np.mean([row.scores.sad for row in rows]))

    before = held_out_sad()
    for step in range(steps):
        samples = [dataset[divmod(step * batch_size + i, len(dataset))] for i in range(batch_size)]
        batch = {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}
        ctx.step = step
        task.training_step(batch, ctx)
    after = held_out_sad()
    print(f"held-out SAD, seed {seed}: {before:.4f} -> {after:.4f} (fall {before - after:.4f})")
    assert after < before - 0.058, (before, after)


def test_gca_run_exports_weights_predict_loads_and_models_add_names(
    tmp_path: Path,
    data_dir: Path,
    val_dir: Path,
    dev_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    one_thread: object,
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MATTEKIT_CONFIG_DIR", str(tmp_path / "config"))
    run = tmp_path / "run"
    args = ["train", "gca", "--data", str(data_dir), "--val", str(val_dir), "-o", str(run), "--device", "cpu"]
    sets = [
        "steps=2",
        "warmup_steps=1",
        "crop_size=32",
        "batch_size=2",
        "workers=0",
        "val_every=2",
        "log_every=1",
    ]
    assert main(args + [x for s in sets for x in ("--set", s)]) == 0
    model = run / "model.safetensors"
    assert (run / "model.safetensors.sha256").read_text().strip() == __import__("hashlib").sha256(
        model.read_bytes()
    ).hexdigest()
    with (run / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    val_rows = [row for row in rows if row["val_sad"]]
    assert [int(r["step"]) for r in rows if r["loss"]] == [1, 2] and len(val_rows) == 1
    assert list(rows[0])[:2] == ["step", "loss"] and {"val_sad", "val_mse", "val_grad", "val_conn"} <= set(
        rows[0]
    )
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # predict loads the export strictly into the registry's GCA
    image = val_dir / "image" / "GT03.png"
    trimap = val_dir / "trimap" / "GT03.png"

    def predict(out: Path, *model_args: str) -> int:
        args = ["--trimap", str(trimap), *model_args, "-o", str(out), "--device", "cpu"]
        return main(["predict", str(image), *args])

    out = tmp_path / "alpha.png"
    assert predict(out, "--model", "gca", "--weights", str(model)) == 0
    assert out.is_file()
    # registered by name, it predicts and lists with its validation SAD
    assert main(["models", "add", "my-gca", str(run)]) == 0
    capsys.readouterr()
    named = tmp_path / "named.png"
    assert predict(named, "--model", "my-gca") == 0
    assert named.read_bytes() == out.read_bytes()
    # eval by name scores what the run's own validation scored: the same weights, images and metrics
    report = tmp_path / "eval.json"
    assert (
        main(["eval", "--data", str(val_dir), "--model", "my-gca", "--device", "cpu", "--json", str(report)])
        == 0
    )
    sad = __import__("json").loads(report.read_text())["mean"]["all"]["sad"]
    assert sad == pytest.approx(float(val_rows[0]["val_sad"]), rel=1e-5)
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "my-gca" in listing and f"{float(val_rows[0]['val_sad']):.4g}" in listing
    assert load_file(str(model)).keys() == _weights(run).keys()
    # refused: a name mattekit uses, a second add without --replace, weights changed after the run
    assert main(["models", "add", "gca-dist", str(run)]) == 2
    assert main(["models", "add", "my-gca", str(run)]) == 2
    assert "--replace" in capsys.readouterr().err
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    assert main(["models", "add", "other", str(run)]) == 2
    assert "is not the" in capsys.readouterr().err


# --- DDP ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)]))
    return env


def test_two_processes_of_batch_b_step_like_one_of_batch_2b(tmp_path: Path, data_dir: Path) -> None:
    """gloo DDP + SyncBN: same parameters (and BN statistics) after two steps as one process at twice
    the batch -- the 2 "nodes" are two torchrun launches on 127.0.0.1 with --nnodes 2."""
    # An epoch of 8 splits evenly: one process takes samples 0-3 then 4-7, rank r takes r, r+2, ...
    one = _tiny(tmp_path, "data.epoch_size=8", steps=2, batch_size=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun processes (OMP_NUM_THREADS=1): the same float summation
    try:
        train(one, data_dir, tmp_path / "one", device="cpu", quiet=True)
    finally:
        torch.set_num_threads(threads)
    recipe = tiny_recipe_file(tmp_path / "two.toml", steps=2, batch_size=2)
    with recipe.open("a") as stream:
        stream.write("[data]\nepoch_size = 8\n")
    port = _free_port()
    script = [str(TESTS / "train_ddp_run.py"), str(recipe), str(data_dir), str(tmp_path / "two")]
    launches = [
        _torchrun(
            [
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "mattekit-test",
                *script,
            ],
            _env(),
        )
        for _ in range(2)
    ]
    outputs = [launch.communicate(timeout=240)[0] for launch in launches]
    assert [launch.returncode for launch in launches] == [0, 0], outputs
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), rtol=1e-5, atol=1e-6, msg=key)
    assert any("running_mean" in key for key in a)


def test_task_name_is_the_registered_one() -> None:
    assert TinyTask.name == NAME
