"""RTSTRUCT contours (a treatment planning system's or a viewer's structure set) as a label map on their series.

Each ROI of the StructureSetROISequence becomes one label, in the sequence's order (1, 2, ...; the names are kept
in the order given). Every CLOSED_PLANAR contour's points (patient coordinates, mm, LPS) are mapped into the
series' voxel grid through the series' own affine (`dicom_series`), must lie on a slice, and are filled on
that slice (a voxel is inside when its centre is: matplotlib's even-odd polygon test, so holes drawn as inner
contours stay holes). The label map is then brought to the orientation medflow reads the series in (RAS).
A contour more than half a voxel outside the image, or between slices, is an error naming the ROI and how far.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medflow.errors import DataError

__all__ = ["is_rtstruct", "rtstruct_mask"]


def is_rtstruct(path: Path) -> bool:
    """A DICOM file whose Modality is RTSTRUCT."""
    from medflow.data.sources.images import dicom_modality

    return dicom_modality(path) == "RTSTRUCT"


def rtstruct_mask(path: Path, folder: Path, series: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """The structure set at `path` rasterized onto the series in `folder`: (label map in RAS order, ROI names)."""
    import pydicom
    from matplotlib.path import Path as Polygon
    from nibabel.orientations import apply_orientation, io_orientation

    from medflow.data.sources.images import dicom_series

    ds = pydicom.dcmread(path)
    slices, affine = dicom_series(folder, series)
    shape = (int(slices[0][1].Columns), int(slices[0][1].Rows), len(slices))
    to_voxel = np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine)  # patient LPS (mm) -> voxel (i, j, k)
    names = {int(r.ROINumber): str(r.ROIName) for r in getattr(ds, "StructureSetROISequence", [])}
    order = list(names)
    mask = np.zeros(shape, np.uint8)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    centres = np.c_[ii.ravel(), jj.ravel()]
    for roi in getattr(ds, "ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        label = order.index(number) + 1 if number in order else len(order) + 1
        name = names.get(number, f"ROI {number}")
        for contour in getattr(roi, "ContourSequence", []):
            if str(getattr(contour, "ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            pts = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            vox = (to_voxel @ np.c_[pts, np.ones(len(pts))].T).T[:, :3]
            k = float(np.median(vox[:, 2]))
            outside = np.maximum(np.maximum(-0.5 - vox, vox - (np.array(shape) - 0.5)), 0)
            if outside.max() > 0:
                mm = float(np.max(outside * np.linalg.norm(affine[:3, :3], axis=0)))
                raise DataError(f"{path}: ROI '{name}' has a contour up to {mm:.1f} mm outside the image of its series "
                                f"({folder}); it was drawn on another series or a larger field of view.")
            if np.abs(vox[:, 2] - round(k)).max() > 0.5:
                raise DataError(f"{path}: ROI '{name}' has a contour that does not lie on one slice of {folder} "
                                f"(slice index {vox[:, 2].min():.2f} to {vox[:, 2].max():.2f}); is the series right?")
            inside = Polygon(vox[:, :2]).contains_points(centres).reshape(shape[:2])
            plane = mask[:, :, int(round(k))]
            plane[inside] = np.where(plane[inside] == label, 0, label)  # even-odd: an inner contour is a hole
    return apply_orientation(mask, io_orientation(affine)).astype(np.uint8), [names[n] for n in order]
