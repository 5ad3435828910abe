"""Scanner geometry: DICOM series written here from NIfTI volumes with known affines (axial, sagittal, oblique;
shuffled file names; rescale slope and intercept) read back onto the same voxels and the same world, as
nibabel and dcm2niix define it; masks drawn in a viewer's grid line up; masks off the grid are named in mm."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from medflow.data.images import ImageSource, read_image_dataset
from medflow.data.sources.images import read_image
from medflow.errors import DataError

DICOM = Path(pydicom.data.__file__).parent / "test_files"
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    r = np.eye(4)
    i, j = [k for k in range(3) if k != axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def write_series(vol: np.ndarray, affine: np.ndarray, folder: Path, slope: float = 2.0, intercept: float = -1000.0,
                 seed: int = 0) -> Path:
    """A DICOM series holding `vol` (i, j, k) whose voxel -> RAS map is `affine`: what a scanner writes for the
    same acquisition (one file per slice k, rows j and columns i, LPS positions), under shuffled file names."""
    folder.mkdir(parents=True)
    lps = LPS @ affine
    col_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    dc, dr = np.linalg.norm(col_step), np.linalg.norm(row_step)
    series = generate_uid()
    names = np.random.default_rng(seed).permutation(vol.shape[2])
    for k in range(vol.shape[2]):
        ds = pydicom.dcmread(DICOM / "MR_small.dcm")
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        ds.ImageOrientationPatient = [float(v) for v in [*(col_step / dc), *(row_step / dr)]]
        ds.ImagePositionPatient = [float(v) for v in (lps[:3, 3] + k * slice_step)]
        ds.PixelSpacing = [float(dr), float(dc)]
        ds.SliceThickness = float(np.linalg.norm(slice_step))
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        stored = np.rint((vol[:, :, k].T - intercept) / slope).astype(np.int16)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = stored.tobytes()
        ds.InstanceNumber = int(k + 1)
        ds.save_as(folder / f"IM{names[k]:04d}")
    return folder


def _volume(shape=(12, 10, 8), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.rint(rng.normal(0, 300, shape) / 2) * 2).astype(np.float32)  # values the slope 2 keeps exactly


AFFINES = {
    "axial": np.array([[0.8, 0, 0, -40.0], [0, 0.8, 0, -52.0], [0, 0, 2.5, 10.0], [0, 0, 0, 1]]),
    "sagittal": np.array([[0, 0, 1.5, 12.0], [0.9, 0, 0, -80.0], [0, 1.1, 0, -30.0], [0, 0, 0, 1]]),
    "oblique": _rotation(0, 17.0) @ _rotation(2, -9.0) @ np.array([[0.7, 0, 0, -30.0], [0, 0.7, 0, 25.0],
                                                                     [0, 0, 3.0, -60.0], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("name", list(AFFINES))
def test_a_series_reads_back_with_the_scanners_affine_and_voxels(tmp_path, name):
    vol, affine = _volume(), AFFINES[name]
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "ref.nii.gz")
    ref, ref_affine = read_image(tmp_path / "ref.nii.gz")  # nibabel's reading, in RAS orientation
    arr, got = read_image(write_series(vol, affine, tmp_path / "series"))
    assert np.allclose(got, ref_affine, atol=1e-4), (got, ref_affine)
    assert arr.shape == ref.shape and np.array_equal(arr, ref)
    # world position of a voxel is the scanner's, whatever the axis order the reader chose
    canon = nib.as_closest_canonical(nib.Nifti1Image(vol, affine))
    assert np.allclose(got, canon.affine, atol=1e-4) and np.array_equal(arr[0], np.asarray(canon.dataobj))
    if name == "oblique":
        assert not np.allclose(got[:3, :3], np.diag(np.diag(got[:3, :3])), atol=1e-3)  # stays oblique


def _masked_dataset(tmp_path, mask: np.ndarray, mask_affine: np.ndarray, **src) -> object:
    vol = _volume()
    write_series(vol, AFFINES["sagittal"], tmp_path / "scans" / "p1")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), mask_affine), tmp_path / "scans" / "p1_mask.nii.gz")
    pd.DataFrame({"image": ["p1"], "mask": ["p1_mask.nii.gz"], "patient": ["a"]}).to_csv(tmp_path / "l.csv",
                                                                                      index=False)
    return read_image_dataset(ImageSource(path=str(tmp_path / "scans"), labels=str(tmp_path / "l.csv"),
                                          patient_id="patient", mask_column="mask", resize=False, **src))


def test_a_viewers_nifti_mask_in_the_scanner_grid_lines_up(tmp_path):
    mask = np.zeros((12, 10, 8), np.uint8)
    mask[2:5, 3:7, 1:3] = 1
    mask[8:11, 1:4, 5:7] = 2
    ds = _masked_dataset(tmp_path, mask, AFFINES["sagittal"])
    canon = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(mask, AFFINES["sagittal"])).dataobj)
    assert np.array_equal(ds.images.masks["p1"], canon)
    # the same mask saved in another axis order (what a viewer in LPS writes) describes the same world grid
    flipped = nib.Nifti1Image(mask[::-1, :, ::-1].copy(), AFFINES["sagittal"] @ np.array(
        [[-1, 0, 0, 11], [0, 1, 0, 0], [0, 0, -1, 7], [0, 0, 0, 1.0]]))
    nib.save(flipped, tmp_path / "flipped.nii.gz")
    arr, aff = read_image(tmp_path / "flipped.nii.gz")
    assert np.array_equal(arr[0], canon) and np.allclose(aff, ds.images.affines["p1"])


def test_a_mask_off_the_grid_is_named_in_mm_and_resampled_on_request(tmp_path):
    mask = np.zeros((12, 10, 8), np.uint8)
    mask[2:6, 2:6, 2:6] = 1
    shifted = AFFINES["sagittal"].copy()
    shifted[:3, 3] += [0.0, 4.5, 0.0]
    with pytest.raises(DataError, match=r"p1_mask\.nii\.gz: the mask's grid .* up to 4\.50 mm apart.*resample_masks"):
        _masked_dataset(tmp_path / "a", mask, shifted)
    ds = _masked_dataset(tmp_path / "b", mask, shifted, resample_masks=True)
    got = ds.images.masks["p1"]
    assert got.shape == ds.images.arrays["p1"].shape[1:] and got.sum() == mask.sum()  # 5 voxels along i, inside

    def centre(m, aff):  # the mask's centre in the scanner's space (mm)
        return aff[:3, :3] @ np.argwhere(m).mean(0) + aff[:3, 3]

    assert np.allclose(centre(got, ds.images.affines["p1"]), centre(mask, shifted), atol=0.5)


def test_bad_series_are_named(tmp_path):
    vol = _volume()
    folder = write_series(vol, AFFINES["axial"], tmp_path / "dup")
    files = sorted(folder.iterdir())
    pydicom.dcmread(files[0]).save_as(folder / "copy_of_first")
    with pytest.raises(DataError, match="sit at the same slice position"):
        read_image(folder)
    gap = write_series(vol, AFFINES["axial"], tmp_path / "gap")
    middle = [f for f in gap.iterdir() if pydicom.dcmread(f).InstanceNumber == 4][0]
    middle.unlink()
    with pytest.raises(DataError, match=r"a gap of 5\.00 mm .* slices are missing"):
        read_image(gap)
    mixed = write_series(vol, AFFINES["axial"], tmp_path / "mixed")
    one = next(mixed.iterdir())
    ds = pydicom.dcmread(one)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(one)
    with pytest.raises(DataError, match="slices with different orientations"):
        read_image(mixed)
    bare = write_series(vol, AFFINES["axial"], tmp_path / "bare")
    for f in bare.iterdir():
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(f)
    with pytest.warns(UserWarning, match="no ImagePositionPatient; slices ordered by InstanceNumber"):
        arr, _ = read_image(bare)
    ref, _ = read_image(write_series(vol, AFFINES["axial"], tmp_path / "ref"))
    assert np.array_equal(arr, ref)  # InstanceNumber follows the slices here


def test_scanner_metadata_become_columns_never_identity(tmp_path):
    from medflow.evaluate.evaluator import SubgroupConfig, subgroup_labels

    vol, rows = _volume((8, 8, 4)), []
    for i, vendor in enumerate(["GE MEDICAL SYSTEMS", "SIEMENS", "SIEMENS"]):
        folder = write_series(vol, AFFINES["axial"], tmp_path / "scans" / f"s{i}", seed=i)
        for f in folder.iterdir():
            ds = pydicom.dcmread(f)
            ds.Manufacturer, ds.KVP, ds.AcquisitionDate = vendor, 120, "20210304"
            ds.PatientName, ds.PatientBirthDate, ds.PatientID = f"Doe^Jane{i}", "19600101", f"P{i}"
            ds.save_as(f)
        rows.append({"image": f"s{i}", "y": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    ds = read_image_dataset(ImageSource(path=str(tmp_path / "scans"), labels=str(tmp_path / "labels.csv"),
                                        resize=False))
    frame = ds.frame
    assert frame["manufacturer"].tolist() == ["GE MEDICAL SYSTEMS", "SIEMENS", "SIEMENS"]
    assert frame["modality"].eq("MR").all() and frame["kvp"].eq(120.0).all()
    assert frame["acquisition_year"].eq(2021).all() and frame["pixel_spacing_mm"].eq(0.8).all()
    assert frame["patient_id"].tolist() == ["P0", "P1", "P2"]  # the pseudonymous id, for the split
    text = frame.astype(str).to_string()
    assert "Doe" not in text and "1960" not in text and "20210304" not in text  # no name, birth or full date
    groups = subgroup_labels(frame, SubgroupConfig(column="manufacturer"), "test")
    assert groups.value_counts().to_dict() == {"SIEMENS": 2, "GE MEDICAL SYSTEMS": 1}


def test_a_study_folder_with_several_series_reads_the_one_asked_for(tmp_path):
    study = tmp_path / "scans" / "p1"
    t1, t2 = _volume(seed=1), _volume(seed=2)
    for name, vol, desc in (("t1", t1, "AX T1 MPRAGE"), ("t2", t2, "AX T2 FLAIR"), ("loc", _volume((12, 10, 3)),
                                                                                     "3-plane localizer")):
        write_series(vol, AFFINES["axial"], study / name)
        for f in (study / name).iterdir():
            ds = pydicom.dcmread(f)
            ds.SeriesDescription = desc
            ds.save_as(f)
    plan = pydicom.dcmread(DICOM / "rtplan.dcm")  # a non-image object in the same study
    plan.save_as(study / "plan.dcm")
    pd.DataFrame({"image": ["p1"], "y": [1]}).to_csv(tmp_path / "l.csv", index=False)
    src = dict(path=str(tmp_path / "scans"), labels=str(tmp_path / "l.csv"), resize=False)
    with pytest.raises(DataError, match=r"p1: 3 image series; series found: .*'AX T1 MPRAGE'.*data\.images\.series"):
        read_image_dataset(ImageSource(**src))
    with pytest.warns(UserWarning, match=r"skipped 1 object\(s\) without pixel data: RTPLAN"):
        ds = read_image_dataset(ImageSource(**src, series={"modality": "mr", "description": "t1"}))
    ref, _ = read_image(study / "t1")
    assert np.array_equal(ds.images.arrays["p1"], ref)
    with pytest.raises(DataError, match="0 series match"):
        read_image_dataset(ImageSource(**src, series={"description": "DWI"}))


def test_a_predicted_mask_as_dicom_seg_reads_back_onto_the_same_voxels(tmp_path):
    import highdicom as hd

    from medflow.data.dicom_seg import seg_bytes
    from medflow.data.sources.images import dicom_series

    vol = _volume((12, 10, 8))
    folder = write_series(vol, AFFINES["oblique"], tmp_path / "series")
    arr, affine = read_image(folder)  # what medflow predicts on: RAS-oriented voxels
    mask = np.zeros(arr.shape[1:], np.uint8)
    mask[2:6, 3:7, 1:4], mask[7:10, 1:4, 4:7] = 1, 2
    (tmp_path / "p.seg.dcm").write_bytes(seg_bytes(mask, folder, ["tumour", "oedema"]))
    seg = pydicom.dcmread(tmp_path / "p.seg.dcm")
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 2
    assert seg.SegmentSequence[0].SegmentLabel == "tumour"
    source = pydicom.dcmread(next(folder.iterdir()))
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    uids = [ds.SOPInstanceUID for _, ds in dicom_series(folder)[0]]
    labels = hd.seg.segread(tmp_path / "p.seg.dcm").get_pixels_by_source_instance(  # highdicom's own reading
        source_sop_instance_uids=uids, combine_segments=True)
    # back to medflow's voxel order through the series' own geometry: the same mask
    native = np.transpose(labels, (2, 1, 0))
    from nibabel.orientations import apply_orientation, io_orientation

    from medflow.data.sources.images import canonical, read_dicom_series

    _, native_affine = read_dicom_series(folder)
    assert np.array_equal(apply_orientation(native, io_orientation(native_affine)), mask)
    assert np.allclose(affine, canonical(native[None].astype(np.float32), native_affine)[1])


def test_a_dicom_seg_from_a_pacs_is_a_mask_and_one_of_another_series_is_refused(tmp_path):
    from medflow.data.dicom_seg import seg_bytes

    scans = tmp_path / "scans"
    folder = write_series(_volume((12, 10, 8)), AFFINES["sagittal"], scans / "p1")
    other = write_series(_volume((12, 10, 8), seed=4), AFFINES["sagittal"], tmp_path / "other")
    arr, _ = read_image(folder)
    mask = np.zeros(arr.shape[1:], np.uint8)
    mask[1:4, 2:6, 3:7] = 1
    (scans / "p1.seg.dcm").write_bytes(seg_bytes(mask, folder, ["lesion"]))
    (scans / "wrong.seg.dcm").write_bytes(seg_bytes(mask, other, ["lesion"]))
    for name, value in (("ok", "p1.seg.dcm"), ("wrong", "wrong.seg.dcm")):
        pd.DataFrame({"image": ["p1"], "mask": [value]}).to_csv(tmp_path / f"{name}.csv", index=False)
    src = dict(path=str(scans), mask_column="mask", resize=False)
    ds = read_image_dataset(ImageSource(labels=str(tmp_path / "ok.csv"), **src))
    assert np.array_equal(ds.images.masks["p1"], mask)
    with pytest.raises(DataError, match=r"wrong\.seg\.dcm: this DICOM SEG references series .*, not the series of its "
                                        r"image"):
        read_image_dataset(ImageSource(labels=str(tmp_path / "wrong.csv"), **src))


def _rtstruct(folder: Path, rois: dict[str, list[np.ndarray]], path: Path) -> Path:
    """An RTSTRUCT as a planning system writes it: ROIs with closed planar contours in patient mm (LPS)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    ref = pydicom.dcmread(next(folder.iterdir()))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.481.3", generate_uid(), "RTSTRUCT"
    ds.FrameOfReferenceUID, ds.SeriesInstanceUID = ref.FrameOfReferenceUID, generate_uid()
    ds.StructureSetROISequence, ds.ROIContourSequence = Sequence(), Sequence()
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = number, Sequence()
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", len(pts)
            c.ContourData = [float(v) for v in np.asarray(pts).ravel()]
            item.ContourSequence.append(c)
        ds.ROIContourSequence.append(item)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_rtstruct_contours_are_rasterized_onto_their_series(tmp_path):
    from medflow.data.rtstruct import rtstruct_mask
    from medflow.data.sources.images import read_dicom_series

    folder = write_series(_volume((12, 10, 8)), AFFINES["oblique"], tmp_path / "scans" / "p1")
    _, native = read_dicom_series(folder)
    lps = LPS @ native

    def square(i0, i1, j0, j1, k):  # a contour around voxels i0..i1, j0..j1 of slice k (corners at half voxels)
        corners = [(i0 - 0.5, j0 - 0.5), (i1 + 0.5, j0 - 0.5), (i1 + 0.5, j1 + 0.5), (i0 - 0.5, j1 + 0.5)]
        return np.array([(lps @ np.array([i, j, k, 1.0]))[:3] for i, j in corners])

    rois = {"GTV": [square(2, 5, 3, 6, k) for k in (2, 3, 4)], "cord": [square(8, 10, 1, 2, 5)]}
    path = _rtstruct(folder, rois, tmp_path / "scans" / "p1_rt.dcm")
    mask, names = rtstruct_mask(path, folder)
    assert names == ["GTV", "cord"]
    expected = np.zeros((12, 10, 8), np.uint8)
    expected[2:6, 3:7, 2:5], expected[8:11, 1:3, 5] = 1, 2
    from nibabel.orientations import apply_orientation, io_orientation

    assert np.array_equal(mask, apply_orientation(expected, io_orientation(native)))
    pd.DataFrame({"image": ["p1"], "mask": ["p1_rt.dcm"]}).to_csv(tmp_path / "l.csv", index=False)
    ds = read_image_dataset(ImageSource(path=str(tmp_path / "scans"), labels=str(tmp_path / "l.csv"),
                                        mask_column="mask", resize=False))
    assert np.array_equal(ds.images.masks["p1"], mask)
    far = _rtstruct(folder, {"GTV": [square(2, 30, 3, 6, 2)]}, tmp_path / "far.dcm")
    with pytest.raises(DataError, match=r"far\.dcm: ROI 'GTV' has a contour up to .* mm outside the image"):
        rtstruct_mask(far, folder)
