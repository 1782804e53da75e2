"""Binary morphology within axial slices, exactly as ``scipy.ndimage`` defines it, in fewer passes,
and the component and box helpers: the building blocks of the ``threshold`` segmenter's scipy path
(:mod:`.threshold`).

* :func:`erode_axial` / :func:`dilate_axial` / :func:`open_axial` = ``scipy.ndimage.binary_erosion``
  / ``binary_dilation`` / ``binary_opening`` with ``structure=s[None]`` for a 2-D structuring element
  ``s`` (``iterations=1``, ``border_value=0``, ``origin=0``: outside the image counts as False; scipy
  1.17 ``ndimage/_morphology.py``). Erosion: ``out[p] = AND over s in S of in[p + s - c]`` with ``c`` the
  centre ``shape // 2``; dilation uses the reflected element: ``OR over s in S of in[p - s + c]``.

  When every non-empty row of ``s`` is one run of True centred on the centre column (a disc, an
  ellipse, a cross, a rectangle: :func:`row_half_widths`), ``S`` is the union over its rows ``dy`` of
  segments ``{dy} x [-w(dy), w(dy)]``, and erosion by a union is the AND of the erosions by its parts
  (dilation: the OR). The erosion by a centred segment of half-width ``w`` along x is built for
  ``w = 1, 2, ...`` by ``E_w[x] = E_{w-1}[x-1] & E_{w-1}[x] & E_{w-1}[x+1]`` (covers ``x-w .. x+w``;
  False next to the border, as with ``border_value=0``), then each row of ``S`` is one shifted AND:
  about ``2 (max w + number of rows)`` boolean passes over the volume instead of one pass per element
  of ``S`` (a 1 x 11 x 11 disc has 97). Integer indices only, so the result is scipy's bit for bit;
  any other element falls back to scipy itself.
* :func:`fill_holes_axial` = ``scipy.ndimage.binary_fill_holes`` of every axial slice (default 2-D
  structure, 4-connectivity): the complement of the background pixels 4-connected to the slice
  border, found with one ``scipy.ndimage.label`` of the whole volume's background whose structure
  links in-plane face neighbours only (no link across slices: every component lies in one slice),
  instead of one flood fill per slice. (Filling holes of the 3-D mask at once would differ: the
  lungs reach the outside through the trachea in 3-D but are holes in every axial slice.)

  On a box: when the mask is False outside a box (:func:`bounding_box`), its axial fill is False
  outside the box and, inside, equals the fill of the box alone: every pixel outside the box reaches
  the slice border in a straight line of pixels outside the box (all background), so a background
  pixel of the box reaches the slice border exactly when it reaches the box's border.
* :func:`component_sizes`: voxel counts per label (``np.bincount`` in chunks), :func:`bounding_box`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: face neighbours within an axial slice only (no link across slices)
PLANE4 = np.zeros((3, 3, 3), dtype=bool)
PLANE4[1] = ndi.generate_binary_structure(2, 1)


def _structure2d(structure: np.ndarray) -> np.ndarray:
    s = np.asarray(structure, dtype=bool)
    if s.ndim == 3 and s.shape[0] == 1:
        s = s[0]
    if s.ndim != 2 or s.shape[0] % 2 == 0 or s.shape[1] % 2 == 0:
        raise ValueError(f"Expected an odd-sized 2-D structuring element (or (1, ny, nx)), "
                         f"got shape {np.shape(structure)}")
    return s


def row_half_widths(structure: np.ndarray) -> np.ndarray | None:
    """Half-width ``w(dy)`` of each row of an odd-sized 2-D ``structure`` (-1 for an empty row) when
    every non-empty row is exactly ``[c - w, c + w]`` around the centre column ``c``; ``None`` otherwise."""
    s = _structure2d(structure)
    c = s.shape[1] // 2
    cols = np.arange(s.shape[1]) - c
    w = np.where(s.any(axis=1), np.where(s, np.abs(cols), -1).max(axis=1), -1)
    rebuilt = np.abs(cols)[None, :] <= w[:, None]
    return w.astype(np.int64) if np.array_equal(rebuilt, s) else None


def _segment_stack(mask: np.ndarray, widths: set[int], erode: bool) -> dict[int, np.ndarray]:
    """``{w: erosion (or dilation) of mask by the segment [-w, w] along the last axis}`` for ``w`` in ``widths``."""
    out: dict[int, np.ndarray] = {}
    cur = mask
    for w in range(0, max(widths) + 1):
        if w:
            nxt = cur.copy()
            if erode:
                nxt[..., 1:] &= cur[..., :-1]
                nxt[..., :-1] &= cur[..., 1:]
                nxt[..., 0] = False  # the neighbour outside the image is False (border_value=0)
                nxt[..., -1] = False
            else:
                nxt[..., 1:] |= cur[..., :-1]
                nxt[..., :-1] |= cur[..., 1:]
            cur = nxt
        if w in widths:
            out[w] = cur
    return out


def _rows(mask: np.ndarray, w: np.ndarray, erode: bool) -> np.ndarray:
    """AND (erosion) or OR (dilation) over the rows ``dy`` of the element of the segment results,
    shifted by ``+dy`` (erosion reads ``in[y + dy]``) or ``-dy`` (dilation reads ``in[y - dy]``)."""
    cy = len(w) // 2
    used = {int(x) for x in w if x >= 0}
    seg = _segment_stack(mask, used, erode)
    ny = mask.shape[-2]
    out = np.full(mask.shape, erode, dtype=bool)
    for row, width in enumerate(w):
        if width < 0:
            continue
        src = seg[int(width)]
        dy = (row - cy) if erode else (cy - row)  # out[y] combines src[y + dy]
        if abs(dy) >= ny:
            if erode:
                out[...] = False
            continue
        lo, hi = max(0, -dy), ny - max(0, dy)  # y range whose y + dy lies in the image
        if erode:
            out[..., lo:hi, :] &= src[..., lo + dy:hi + dy, :]
            out[..., :lo, :] = False
            out[..., hi:, :] = False
        else:
            out[..., lo:hi, :] |= src[..., lo + dy:hi + dy, :]
    return out


def erode_axial(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, structure=s[None])`` of a (z, y, x) mask, ``s`` 2-D (see module doc)."""
    m = np.asarray(mask, dtype=bool)
    s = _structure2d(structure)
    w = row_half_widths(s)
    if w is None or m.ndim != 3 or not (w >= 0).any():
        return ndi.binary_erosion(m, structure=s[None])
    return _rows(m, w, erode=True)


def dilate_axial(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, structure=s[None])`` of a (z, y, x) mask, ``s`` 2-D (see module doc)."""
    m = np.asarray(mask, dtype=bool)
    s = _structure2d(structure)
    w = row_half_widths(s)
    if w is None or m.ndim != 3 or not (w >= 0).any():
        return ndi.binary_dilation(m, structure=s[None])
    return _rows(m, w, erode=False)


def open_axial(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_opening(mask, structure=s[None])`` with scipy's defaults: erosion, then dilation."""
    return dilate_axial(erode_axial(mask, structure), structure)


def fill_holes_axial(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` of every axial slice of a (z, y, x) mask (see module doc)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise ValueError(f"Expected a 3-D mask (z, y, x), got shape {m.shape}")
    if m.size == 0:
        return m.copy()
    lab, n = ndi.label(~m, structure=PLANE4)
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 = the mask itself
    return ~outside[lab]


def component_sizes(lab: np.ndarray, n: int, chunk: int = 1 << 20) -> np.ndarray:
    """Voxel count of every label ``0..n`` of a label array (int64, length ``n + 1``): ``np.bincount``
    over chunks of the flattened array (the same counts as one call, without an int64 copy of the
    whole volume, which costs more than the counting)."""
    flat = lab.reshape(-1)
    sizes = np.zeros(n + 1, dtype=np.int64)
    for i in range(0, flat.size, chunk):
        sizes += np.bincount(flat[i:i + chunk], minlength=n + 1)
    return sizes


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (one slice per axis) holding every True element of ``mask``; ``None`` when empty."""
    m = np.asarray(mask, dtype=bool)
    box = []
    for ax in range(m.ndim):
        hit = np.flatnonzero(m.any(axis=tuple(a for a in range(m.ndim) if a != ax)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)
