"""``mattekit trimap``: a trimap from a rough mask, or from a box through OpenCV's GrabCut."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mattekit.batch import host_memory_budget
from mattekit.cli import app, err_console
from mattekit.errors import MattekitError
from mattekit.io import (
    DEFAULT_MAX_PIXELS,
    check_writable_folders,
    describe_pixels,
    image_size,
    read_gray,
    read_image,
    refuse_overwrite,
    write_png,
)
from mattekit.joint import MORPHOLOGY, load_trimap_maker
from mattekit.trimap import grabcut_mask, grabcut_pixels


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
    max_pixels: Annotated[
        int, typer.Option(help="Refuse images with more pixels than this.")
    ] = DEFAULT_MAX_PIXELS,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory", show_default=False,
            help="Memory budget for GrabCut, e.g. 4GB (default: 50% of available RAM); a photo too big for "
            "it is segmented on a scaled-down copy.",
        ),
    ] = None,
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
    if output.suffix.lower() != ".png" or output.is_dir():
        raise MattekitError(f"-o {output}: trimaps are written as PNG; use a file name ending in .png")
    refuse_overwrite([image, mask], [output])
    check_writable_folders([output])
    box = None if rect is None else _parse_rect(rect)
    width, height = image_size(image, max_pixels)  # before anything is decoded
    maker = load_trimap_maker(model, weights, device, erode, dilate)
    if mask is not None:
        mask_width, mask_height = image_size(mask, max_pixels)
        if (mask_width, mask_height) != (width, height):
            raise MattekitError(f"{mask}: mask is {mask_width}x{mask_height}, image is {width}x{height}")
        rough = read_gray(mask, max_pixels)
        # the morphology needs the mask alone: the photo is decoded only for a trimap network
        picture = None if maker.model is None else read_image(image, max_pixels)[0]
    else:
        budget = host_memory_budget(max_memory)
        pixels = grabcut_pixels(height, width, budget)
        if pixels < width * height:
            err_console.print(
                f"GrabCut runs on a copy scaled down to {describe_pixels(pixels)} to stay within the memory "
                f"budget of {budget / 1e9:.2f} GB; the mask is scaled back to {width}x{height}",
                soft_wrap=True,
            )
        picture, _ = read_image(image, max_pixels)
        rough = grabcut_mask(picture, box, max_pixels=pixels)
    trimap = maker.estimate(picture, rough).trimap
    del picture
    write_png(output, trimap)
    err_console.print(f"wrote {escape(str(output))}", soft_wrap=True)
