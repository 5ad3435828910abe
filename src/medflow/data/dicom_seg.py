"""Predicted masks as DICOM SEG (highdicom) referencing their source series, so they open as overlays in 3D Slicer,
OHIF or a PACS.

A mask medflow predicts lies in the RAS-oriented voxel grid the image was read in (`data.sources.images.canonical`);
`seg_bytes` turns it back to the source series' own order (columns, rows, slices sorted along the normal) and
writes one frame per source slice, each referencing its source instance: the segmentation shares the series'
frame of reference and sits on the same pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from medflow.errors import DataError

__all__ = ["seg_bytes", "seg_mask", "is_seg"]


def is_seg(path: Path) -> bool:
    """A DICOM file whose Modality is SEG."""
    from medflow.data.sources.images import dicom_modality

    return dicom_modality(path) == "SEG"


def seg_bytes(mask: np.ndarray, folder: Path, labels: list[str], series: dict | None = None) -> bytes:
    """A DICOM SEG (labels 1..K as segments) for `mask`, predicted on the DICOM series in `folder`."""
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from nibabel.orientations import apply_orientation, io_orientation, ornt_transform
    from pydicom.sr.codedict import codes

    from medflow.data.sources.images import dicom_series

    slices, native_affine = dicom_series(folder, series)
    sources = [ds for _, ds in slices]
    back = ornt_transform(np.array([[0, 1], [1, 1], [2, 1]]), io_orientation(native_affine))
    native = apply_orientation(np.asarray(mask), back)  # (i, j, k) in the series' own order
    if native.shape[2] != len(sources) or native.shape[:2] != (sources[0].Columns, sources[0].Rows):
        raise DataError(f"{folder}: a mask of {list(mask.shape)} voxels does not fit this series "
                        f"({sources[0].Columns} x {sources[0].Rows} x {len(sources)}).")
    frames = np.ascontiguousarray(np.transpose(native, (2, 1, 0))).astype(np.uint8)  # (slices, rows, cols)
    tissue = CodedConcept(value="85756007", scheme_designator="SCT", meaning="Tissue")
    algorithm = hd.AlgorithmIdentificationSequence(name="medflow", version=_version(),
                                                   family=codes.cid7162.ArtificialIntelligence)
    segments = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=label, segmented_property_category=tissue,
        segmented_property_type=tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for i, label in enumerate(labels)]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=9000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medflow", manufacturer_model_name="medflow",
        software_versions=_version(), device_serial_number="medflow", series_description="medflow predicted mask",
        omit_empty_frames=False)
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()


def seg_mask(path: Path, folder: Path, series: dict | None = None) -> np.ndarray:
    """A DICOM SEG drawn on the series in `folder` (a PACS or viewer export) as one label map in the voxel grid
    medflow reads that series in (RAS-oriented), segment numbers as labels; an error when it references
    another series."""
    import highdicom as hd
    from nibabel.orientations import apply_orientation, io_orientation

    from medflow.data.sources.images import dicom_series

    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # noqa: BLE001 - highdicom / pydicom raise many types on a bad file
        raise DataError(f"{path}: not a readable DICOM SEG ({type(exc).__name__}: {exc}).") from exc
    slices, native_affine = dicom_series(folder, series)
    sources = [ds for _, ds in slices]
    own = str(sources[0].SeriesInstanceUID)
    referenced = {str(r.SeriesInstanceUID) for r in getattr(seg, "ReferencedSeriesSequence", [])}
    if own not in referenced:
        raise DataError(f"{path}: this DICOM SEG references series {', '.join(sorted(referenced)) or '(none)'}, not "
                        f"the series of its image ({folder}: {own}); export the segmentation of this series.")
    labels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[ds.SOPInstanceUID for ds in sources],
                                               combine_segments=True, assert_missing_frames_are_empty=True)
    native = np.transpose(np.asarray(labels), (2, 1, 0))  # (slices, rows, cols) -> (i, j, k)
    return apply_orientation(native, io_orientation(native_affine)).astype(np.uint8)


def _version() -> str:
    from medflow import __version__

    return __version__
