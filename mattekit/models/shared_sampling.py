"""Shared sampling matting (Gastal & Oliveira, Eurographics 2010), windows drawing the whole image's samples.

pymatting's ``estimate_alpha_sm`` runs the paper's four steps on one image: trimap expansion, sample
gathering along rays, sample refinement and local smoothing (the paper is not among the stored ones, so no
section numbers are given). The gathering casts rays from every unknown pixel until they meet known
foreground and background or leave the image, so its samples come from anywhere in the photo; a window cut
from a big photo ends its rays at the window's edge and draws other samples (docs/engine.md, "Per-tile
differences of shared sampling"). Here a window is solved with the whole image at hand: the expansion and
the fallback colours are the whole image's, and the gathering (:func:`gather_window`) casts each window
pixel's rays across the whole image; only refinement and smoothing, which look 5 px around a pixel each,
run on the window. Pixels more than 10 px inside a window (the engine's margin is the overlap, 32 px by
default) therefore get the whole-image pass's alpha to the last bit, whatever the window's size.

The gathering kernel is pymatting's ``sample_gathering`` (MIT licence; same start angles, costs and
ties) with its loop restricted to one window's pixels; it calls pymatting's own cost functions.
Parameters are ``estimate_alpha_sm``'s defaults.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from mattekit.jit import import_pymatting
from mattekit.models.base import WindowSolver
from mattekit.models.classical import ClassicalSolver, degenerate_windows

import_pymatting()  # the registry imports this module only when the model is built (mattekit.jit)
from pymatting.alpha.estimate_alpha_sm import (  # noqa: E402
    Ep,
    Np,
    estimate_alpha,
    estimate_alpha_sm,
    expand_trimap,
    local_smoothing,
    sample_refinement,
)

#: ``estimate_alpha_sm``'s defaults: expansion radius and colour threshold, angles, cost exponents
#: (eN, eA, ef, eb), Np radius, refinement radius, smoothing radii and squared sigmas.
EXPANSION = (10, 0.02)
ANGLES = 4
COST_EXPONENTS = (3.0, 2.0, 1.0, 4.0)
NP_RADIUS = 1
REFINEMENT_RADIUS = 5
SMOOTHING_RADII = (5, 5, 5)
SMOOTHING_SIGMA_SQ = ((2 * 5 + 1) ** 2 / (9.0 * math.pi), 0.1, (2 * 5 + 1) ** 2 / (9.0 * math.pi))


def gather_window(
    gathering_f: np.ndarray, gathering_b: np.ndarray, gathering_alpha: np.ndarray,
    image: np.ndarray, trimap: np.ndarray, top: int, left: int,
) -> None:
    """Sample gathering of the window whose top-left pixel is (``top``, ``left``) of ``image`` and
    of its expanded ``trimap`` (whole-image float32 arrays), into the window-sized outputs; rays run over
    the whole image.  pymatting's loop, restricted to the window (compiled on the first call, then
    read from numba's cache)."""
    eN, eA, ef, eb = (np.float32(e) for e in COST_EXPONENTS)
    _gather(gathering_f, gathering_b, gathering_alpha, image, trimap, top, left, ANGLES, eN, eA, ef, eb,
            NP_RADIUS)


@njit(cache=True, parallel=True, nogil=True)
def _gather(gathering_f, gathering_b, gathering_alpha, image, trimap, top, left, num_angles,
           eN, eA, ef, eb, np_radius):
    h, w = trimap.shape
    window_h, window_w = gathering_alpha.shape
    max_steps = 2 * max(w, h)
    for index in prange(window_h * window_w):
        wy, wx = index // window_w, index % window_w
        y, x = wy + top, wx + left
        fg_samples = np.zeros((num_angles, 3), dtype=np.float32)
        fg_xy = np.zeros((num_angles, 2), dtype=np.int32)
        bg_samples = np.zeros((num_angles, 3), dtype=np.float32)
        bg_xy = np.zeros((num_angles, 2), dtype=np.int32)
        c_p = image[y, x]
        gathering_alpha[wy, wx] = trimap[y, x]
        if trimap[y, x] == 0:
            gathering_b[wy, wx] = c_p
            continue
        if trimap[y, x] == 1:
            gathering_f[wy, wx] = c_p
            continue
        # Start angles on the whole image's 8 x 8 grid, shuffled as pymatting does.
        n = 8
        i = ((x % n) + (y % n) * n) * 99991 % (n * n)
        start_angle = 2.0 * np.pi / (n * n) * i
        num_fg = 0
        num_bg = 0
        for a in range(num_angles):
            angle = 2.0 * np.pi / num_angles * a + start_angle
            c = np.cos(angle)
            s = np.sin(angle)
            has_fg = False
            has_bg = False
            for step in range(max_steps):
                if has_fg and has_bg:
                    break
                x2 = int(x + step * c)
                y2 = int(y + step * s)
                if x2 < 0 or y2 < 0 or x2 >= w or y2 >= h:
                    break
                if not has_fg and trimap[y2, x2] == 1:
                    fg_samples[num_fg] = image[y2, x2]
                    fg_xy[num_fg, 0] = x2
                    fg_xy[num_fg, 1] = y2
                    num_fg += 1
                    has_fg = True
                if not has_bg and trimap[y2, x2] == 0:
                    bg_samples[num_bg] = image[y2, x2]
                    bg_xy[num_bg, 0] = x2
                    bg_xy[num_bg, 1] = y2
                    num_bg += 1
                    has_bg = True
        if num_fg == 0:
            fg_samples[0] = gathering_f[wy, wx]
            fg_xy[0, 0] = x
            fg_xy[0, 1] = y
            num_fg = 1
        if num_bg == 0:
            bg_samples[0] = gathering_b[wy, wx]
            bg_xy[0, 0] = x
            bg_xy[0, 1] = y
            num_bg = 1
        min_ep_f = np.inf
        min_ep_b = np.inf
        for a in range(num_fg):
            min_ep_f = min(min_ep_f, Ep(image, x, y, fg_xy[a, 0], fg_xy[a, 1]))
        for b in range(num_bg):
            min_ep_b = min(min_ep_b, Ep(image, x, y, bg_xy[b, 0], bg_xy[b, 1]))
        pf_p = min_ep_b / (min_ep_f + min_ep_b + 1e-5)
        min_cost = np.inf
        for a in range(num_fg):
            for b in range(num_bg):
                f = fg_samples[a]
                g = bg_samples[b]
                alpha_p = estimate_alpha(c_p, f, g)
                a_p = pf_p + (1.0 - 2.0 * pf_p) * alpha_p
                dp_f = np.hypot(x - fg_xy[a, 0], y - fg_xy[a, 1])
                dp_b = np.hypot(x - bg_xy[b, 0], y - bg_xy[b, 1])
                g_p = Np(image, x, y, f, g, np_radius) ** eN * a_p ** eA * dp_f ** ef * dp_b ** eb
                if min_cost > g_p:
                    min_cost = g_p
                    gathering_alpha[wy, wx] = alpha_p
                    gathering_f[wy, wx] = f
                    gathering_b[wy, wx] = g



class FramedImage:
    """One image prepared for window solves: its float32 colours, its expanded trimap and the mean
    known colours pymatting falls back on, all of the whole image."""

    def __init__(self, image: np.ndarray, trimap: np.ndarray) -> None:
        self.image = np.ascontiguousarray(image, dtype=np.float32)
        plain = (trimap.astype(np.float64) / 255.0).astype(np.float32)  # as ClassicalSolver hands it over
        self.trimap = plain.copy()
        expand_trimap(self.trimap, plain, self.image, EXPANSION[0], np.float32(EXPANSION[1]))
        self.mean_fg = self.image[self.trimap == 1.0].mean(axis=0)
        self.mean_bg = self.image[self.trimap == 0.0].mean(axis=0)

    def solve(self, box: tuple[int, int, int, int], previous: np.ndarray | None = None) -> np.ndarray:
        """Alpha (h, w) float32 of the window ``box`` = (top, bottom, left, right); one pass needs no
        ``previous`` alpha (a window's samples are the whole pass's already)."""
        top, bottom, left, right = box
        image = np.ascontiguousarray(self.image[top:bottom, left:right])
        trimap = np.ascontiguousarray(self.trimap[top:bottom, left:right])
        gathering_f = np.zeros_like(image) + self.mean_fg
        gathering_b = np.zeros_like(image) + self.mean_bg
        gathering_alpha = np.zeros_like(trimap)
        gather_window(gathering_f, gathering_b, gathering_alpha, self.image, self.trimap, top, left)
        refined_f, refined_b = np.zeros_like(image), np.zeros_like(image)
        refined_alpha = np.zeros_like(trimap)
        sample_refinement(refined_f, refined_b, refined_alpha, gathering_f, gathering_b, image, trimap,
                             REFINEMENT_RADIUS)
        final_f, final_b, final_alpha = np.zeros_like(image), np.zeros_like(image), np.zeros_like(trimap)
        local_smoothing(final_f, final_b, final_alpha, refined_f, refined_b, refined_alpha, image, trimap,
                           *SMOOTHING_RADII, *(np.float32(s) for s in SMOOTHING_SIGMA_SQ))
        return np.clip(final_alpha, 0.0, 1.0)


class SharedSampling(ClassicalSolver):
    """pymatting's shared sampling for whole images; windows of a tiled image are solved with the whole
    image at hand (:meth:`window_solver`), so tiles draw the samples the whole pass draws."""

    whole_image_windows = True

    def __init__(self) -> None:
        # Measured peak growth: per-pixel samples and confidences: 121 B/px at 9.7 % unknown, 120 at 49 %.
        super().__init__(estimate_alpha_sm, (128, 0))

    def window_solver_bytes_per_pixel(self, unknown: float = 1.0) -> float:
        # FramedImage's float32 trimap, expanded trimap and their transient copies: measured 19-28 B per
        # pixel (``python benchmarks/highres.py memory --models shared-sampling --scales 1 2``).
        return 28

    def window_solver(self, image: np.ndarray, trimap: np.ndarray) -> WindowSolver:
        return degenerate_windows(trimap) or FramedImage(image, trimap).solve
