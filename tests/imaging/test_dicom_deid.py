"""DICOM de-identification (PS3.15 Annex E basic profile): identities gone from every byte, dates shifted per
patient, UIDs replaced consistently, private tags removed, pixels and geometry untouched, nothing half-written."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medflow.data.dicom_deid import deidentify_dicom
from medflow.data.sources.images import read_image
from medflow.errors import DataError
from tests.imaging.test_geometry import AFFINES, _volume, write_series

DICOM = Path(pydicom.data.__file__).parent / "test_files"


def _study(root: Path) -> Path:
    """Two patients: a 3-slice MR series each (names, birth dates, an institution, a private tag) and a CT file."""
    for i, (name, pid) in enumerate([("Doe^Jane", "MRN-84227991"), ("Roe^Richard", "MRN-55510020")]):
        folder = write_series(_volume((8, 8, 3), seed=i), AFFINES["axial"], root / f"patient{i}" / "mr", seed=i)
        for k, f in enumerate(sorted(folder.iterdir())):
            ds = pydicom.dcmread(f)
            ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, pid, "19600704"
            ds.InstitutionName, ds.ReferringPhysicianName = "St Elsewhere Hospital", "House^Gregory"
            ds.StudyDate, ds.SeriesDate, ds.AcquisitionDateTime = "20210304", "20210304", f"2021030{4 + k}101500"
            ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.{i}"
            ds.private_block(0x0011, "ACME", create=True).add_new(0x01, "LO", f"secret note {name}")
            ds.save_as(f)
    shutil.copy(DICOM / "CT_small.dcm", root / "patient0" / "ct.dcm")
    (root / "README.txt").write_text("not a DICOM file")
    return root


def test_identities_are_gone_and_the_images_stay(tmp_path):
    src = _study(tmp_path / "scans")
    summary = deidentify_dicom(src, tmp_path / "clean", secret=7, mapping=tmp_path / "ids.csv")
    out = sorted((tmp_path / "clean").rglob("*"))
    files = [f for f in out if f.is_file()]
    assert summary["files"] == 7 and summary["patients"] == 3 and summary["skipped_not_dicom"] == ["README.txt"]
    blob = b"".join(f.read_bytes() for f in files)
    for secret in (b"Doe", b"Roe", b"MRN-84227991", b"19600704", b"St Elsewhere", b"House", b"secret note",
                   b"1.2.826.0.1.3680043.8.498.0"):
        assert secret not in blob, secret
    ds = [pydicom.dcmread(f) for f in files]
    assert all(d.PatientIdentityRemoved == "YES" and d.PatientID.startswith("MF") for d in ds)
    assert {d.DeidentificationMethodCodeSequence[0].CodeValue for d in ds} == {"113100"}
    mr0 = [d for d, f in zip(ds, files, strict=True) if "patient0/mr" in str(f)]
    # one patient: one pseudonym, one date shift (intervals kept), one new study UID shared by its files
    assert len({d.PatientID for d in mr0}) == 1 and len({d.StudyInstanceUID for d in mr0}) == 1
    times = sorted(d.AcquisitionDateTime for d in mr0)
    assert [int(t[6:8]) - int(times[0][6:8]) for t in times] == [0, 1, 2] and times[0][:8] != "20210304"
    assert all(not any(e.tag.is_private for e in d.iterall()) for d in ds)
    # pixels and geometry untouched: the series reads back to the same voxels and affine
    a, aff_a = read_image(src / "patient1" / "mr")
    b, aff_b = read_image(tmp_path / "clean" / "patient1" / "mr")
    assert np.array_equal(a, b) and np.allclose(aff_a, aff_b)
    # the mapping only where asked, and the same secret gives the same pseudonyms
    assert "MRN-84227991" in (tmp_path / "ids.csv").read_text()
    again = deidentify_dicom(src, tmp_path / "again", secret=7)
    assert again["mapping"] is None and pydicom.dcmread(next((tmp_path / "again" / "patient0" / "mr").iterdir())
                                                        ).PatientID == mr0[0].PatientID


def test_cli_and_bad_input(tmp_path):
    src = _study(tmp_path / "scans")
    r = subprocess.run([sys.executable, "-m", "medflow", "deid", str(src), "-o", str(tmp_path / "clean")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "7 DICOM file(s) of 3 patient(s) de-identified" in r.stdout
    assert (tmp_path / "clean.summary.json").exists() and not (tmp_path / "ids.csv").exists()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 10)
    with pytest.raises(DataError, match="no readable DICOM file"):
        deidentify_dicom(tmp_path / "junk", tmp_path / "junk_out")
    assert not (tmp_path / "junk_out").exists()
