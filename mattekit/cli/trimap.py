"""``mattekit trimap``: a trimap from a rough mask, or from a box through OpenCV's GrabCut."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mattekit.cli import app, err_console
from mattekit.errors import MattekitError
from mattekit.io import read_gray, read_image, write_png
from mattekit.joint import MORPHOLOGY, load_trimap_maker
from mattekit.trimap import grabcut_mask


def _parse_rect(spec: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in spec.split(","))
    except ValueError:
        raise MattekitError(f"--rect {spec!r}: expected x,y,width,height in pixels") from None
    return x, y, w, h


@app.command()
def trimap(
    image: Annotated[Path, typer.Argument(help="The photo.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Trimap PNG to write.")],
    mask: Annotated[
        Path | None, typer.Option(help="Rough mask of the subject (white = subject), as large as the image.")
    ] = None,
    rect: Annotated[
        str | None, typer.Option(help="x,y,width,height box around the subject: GrabCut makes the mask.")
    ] = None,
    erode: Annotated[int, typer.Option(help="Pixels eroded from the mask to get sure foreground.")] = 10,
    dilate: Annotated[int, typer.Option(help="Pixels dilated around the mask to get sure background.")] = 10,
    model: Annotated[
        str, typer.Option("--model", "-m", help="morphology (erode / dilate), or tgn (needs --weights).")
    ] = MORPHOLOGY,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint of the trimap model.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N] (trimap networks only).")] = "auto",
) -> None:
    """Make a trimap (0 background, 128 unknown, 255 foreground) from a mask or a GrabCut box, by erosion
    and dilation or with TGN."""
    if (mask is None) == (rect is None):
        raise MattekitError("give exactly one of --mask and --rect")
    if output.suffix.lower() != ".png":
        raise MattekitError(f"-o {output}: trimaps are written as PNG; use a name ending in .png")
    maker = load_trimap_maker(model, weights, device, erode, dilate)
    picture, _ = read_image(image)
    height, width = picture.shape[:2]
    if mask is not None:
        rough = read_gray(mask)
        if rough.shape != (height, width):
            size = f"{rough.shape[1]}x{rough.shape[0]}"
            raise MattekitError(f"{mask}: mask is {size}, image is {width}x{height}")
    else:
        rough = grabcut_mask(picture, _parse_rect(rect))
    write_png(output, maker.estimate(picture, rough).trimap / 255.0)
    err_console.print(f"wrote {output}")
