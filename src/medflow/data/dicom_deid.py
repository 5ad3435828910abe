"""DICOM de-identification after PS3.15 Annex E (Basic Application Level Confidentiality Profile).

    medflow deid scans/ -o clean/ [--mapping ids.csv] [--keep-patient-characteristics]

What each file goes through (its pixels and geometry are not touched):

* every person name (VR PN) is emptied, every private tag removed, and the identifying attributes the profile
  lists (ids, addresses, institutions, devices, accession and study numbers, free-text comments, request and
  content sequences, ...; `REMOVE` and `EMPTY` below) removed or emptied, at every nesting level;
* PatientID and PatientName become one pseudonym per patient (a keyed hash of the original id with `secret`);
* every date (DA, and the date of a DT) is shifted by one offset per patient (30-365 days back, keyed by the
  secret), so intervals within a patient hold (the Retain Longitudinal Temporal Information Modified Dates
  option); times are kept;
* every UID except the class and syntax UIDs is replaced by a keyed hash of the original (the same UID maps to
  the same new UID in every file: series, studies and references stay consistent);
* PatientIdentityRemoved = YES and the methods used are recorded (DeidentificationMethod and its code
  sequence: 113100 basic profile, 113107 modified dates, 113108 patient characteristics when retained);
* burned-in annotation cannot be removed from pixels here: files that say BurnedInAnnotation YES, or whose
  modality usually carries it (US, SC, OT, XA, ES) without saying NO, are listed in the summary as needing a
  look.

The mapping (original patient id -> pseudonym, date shift) is written only when asked for (`mapping`). The
output folder is written to a temporary folder and renamed, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from medflow.data.sources.meds import atomic_dir
from medflow.errors import DataError

__all__ = ["deidentify_dicom", "is_dicom", "REMOVE", "EMPTY"]

REMOVE = {
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress", "PatientTelephoneNumbers",
    "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "MedicalRecordLocator", "PatientComments",
    "AdditionalPatientHistory", "Occupation", "MilitaryRank", "BranchOfService", "RegionOfResidence",
    "CountryOfResidence", "PatientInsurancePlanCodeSequence", "PatientReligiousPreference", "EthnicGroup",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianIdentificationSequence",
    "OperatorIdentificationSequence", "StationName", "DeviceSerialNumber", "DeviceUID", "PlateID",
    "DetectorID", "GantryID", "ImageComments", "StudyComments", "SeriesDescription", "StudyDescription",
    "RequestAttributesSequence", "ContentSequence", "PerformedProcedureStepID", "ScheduledProcedureStepID",
    "PerformedProcedureStepDescription", "RequestedProcedureID", "RequestedProcedureDescription",
    "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest", "IssuerOfPatientID",
    "IssuerOfAdmissionID", "AdmissionID", "AdmittingDiagnosesDescription", "DerivationDescription",
    "AcquisitionComments", "ProtocolName", "CurrentPatientLocation", "PatientInstitutionResidence",
    "VisitComments", "ReasonForStudy", "RequestingService", "ResponsibleOrganization", "TextComments",
    "InterpretationText", "ScheduledPatientInstitutionResidence", "PersonAddress", "PersonTelephoneNumbers",
    "ConsultingPhysicianIdentificationSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
}
EMPTY = {"AccessionNumber", "StudyID", "PatientBirthDate", "ReferringPhysicianName", "ContentCreatorName"}
CHARACTERISTICS = {"PatientSex", "PatientAge", "PatientSize", "PatientWeight", "PregnancyStatus", "SmokingStatus"}
KEEP_UIDS = {"SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
             "ImplementationClassUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID",
             "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "SOPClassesInStudy"}
BURNED_IN = {"US", "SC", "OT", "XA", "ES", "RF"}


def is_dicom(path: Path) -> bool:
    """A file with the DICM preamble, or a folder holding one (searched recursively)."""
    files = [path] if path.is_file() else (f for f in path.rglob("*") if f.is_file())
    for f in files:
        try:
            with open(f, "rb") as fh:
                head = fh.read(132)
        except OSError:
            continue
        if head[128:132] == b"DICM" or f.suffix.lower() in (".dcm", ".dicom"):
            return True
    return False


class _Keys:
    """Pseudonyms, date shifts and UIDs keyed by the secret: the same input always maps to the same output."""

    def __init__(self, secret: int) -> None:
        self.secret = str(secret).encode()
        self.patients: dict[str, tuple[str, int]] = {}

    def _hash(self, *parts: str) -> bytes:
        return hashlib.sha256(self.secret + b"|" + "|".join(parts).encode()).digest()

    def patient(self, pid: str) -> tuple[str, int]:
        if pid not in self.patients:
            h = self._hash("patient", pid)
            self.patients[pid] = ("MF" + h[:6].hex().upper(), -(30 + int.from_bytes(h[6:8], "big") % 336))
        return self.patients[pid]

    def uid(self, uid: str) -> str:
        return "2.25." + str(int.from_bytes(self._hash("uid", uid)[:16], "big"))


def _shift(value: str, vr: str, days: int) -> str:
    text = str(value).strip()
    if not text:
        return text
    try:
        if vr == "DA":
            return (datetime.strptime(text[:8], "%Y%m%d").date() + timedelta(days=days)).strftime("%Y%m%d")
        day = datetime.strptime(text[:8], "%Y%m%d").date() + timedelta(days=days)
        return day.strftime("%Y%m%d") + text[8:]
    except ValueError:
        return ""  # a date that cannot be read cannot be shifted: emptied rather than kept


def _clean(ds: Any, keys: _Keys, days: int, keep_characteristics: bool, counts: dict[str, int]) -> None:
    ds.remove_private_tags()
    for elem in list(ds):
        kw = elem.keyword
        if elem.VR == "SQ":
            if kw in REMOVE:
                del ds[elem.tag]
                counts["removed"] += 1
                continue
            for item in elem.value:
                _clean(item, keys, days, keep_characteristics, counts)
        elif kw in REMOVE or (kw in CHARACTERISTICS and not keep_characteristics):
            del ds[elem.tag]
            counts["removed"] += 1
        elif kw in EMPTY or elem.VR == "PN":
            elem.value = ""
            counts["emptied"] += 1
        elif elem.VR in ("DA", "DT") and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            shifted = [_shift(v, elem.VR, days) for v in values]
            elem.value = shifted if elem.VM > 1 else shifted[0]
            counts["dates_shifted"] += 1
        elif elem.VR == "UI" and kw not in KEEP_UIDS and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            mapped = [keys.uid(str(v)) for v in values]
            elem.value = mapped if elem.VM > 1 else mapped[0]
            counts["uids_replaced"] += 1


def deidentify_dicom(src: str | Path, out: str | Path, secret: int = 0, mapping: str | Path | None = None,
                     keep_characteristics: bool = False, overwrite: bool = False, progress=None) -> dict[str, Any]:
    """De-identify every DICOM file under `src` into `out` (same relative paths); returns the summary."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.errors import InvalidDicomError
    from pydicom.sequence import Sequence

    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"{src}: no such DICOM file or folder.")
    files = [src] if src.is_file() else sorted(f for f in src.rglob("*") if f.is_file())
    keys, counts = _Keys(secret), {"removed": 0, "emptied": 0, "dates_shifted": 0, "uids_replaced": 0}
    skipped, burned, written = [], [], 0
    with atomic_dir(out, overwrite) as tmp:
        for f in files:
            try:
                ds = pydicom.dcmread(f)
            except (InvalidDicomError, Exception):  # noqa: BLE001 - pydicom raises many types on damaged files
                skipped.append(str(f.relative_to(src) if src.is_dir() else f.name))
                continue
            pid = str(getattr(ds, "PatientID", "") or getattr(ds, "PatientName", "") or "unknown")
            pseudonym, days = keys.patient(pid)
            if str(getattr(ds, "BurnedInAnnotation", "")).upper() == "YES" or (
                    str(getattr(ds, "Modality", "")).upper() in BURNED_IN
                    and str(getattr(ds, "BurnedInAnnotation", "")).upper() != "NO"):
                burned.append(str(f.relative_to(src) if src.is_dir() else f.name))
            _clean(ds, keys, days, keep_characteristics, counts)
            if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
                ds.file_meta.MediaStorageSOPInstanceUID = keys.uid(str(ds.file_meta.MediaStorageSOPInstanceUID))
            ds.PatientID, ds.PatientName, ds.PatientIdentityRemoved = pseudonym, pseudonym, "YES"
            methods = [("113100", "Basic Application Confidentiality Profile"),
                       ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")]
            if keep_characteristics:
                methods.append(("113108", "Retain Patient Characteristics Option"))
            ds.DeidentificationMethod = "medflow: PS3.15 basic profile, dates shifted per patient"  # LO: 64 chars
            codes = []
            for value, meaning in methods:
                item = Dataset()
                item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
                codes.append(item)
            ds.DeidentificationMethodCodeSequence = Sequence(codes)
            target = tmp / (f.relative_to(src) if src.is_dir() else f.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds.save_as(target)
            written += 1
            if progress:
                progress()
        if not written:
            raise DataError(f"{src}: no readable DICOM file to de-identify ({len(skipped)} other file(s)).")
    if mapping is not None:
        from medflow.artifacts import write_text

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["original_patient_id", "pseudonym", "date_shift_days"])
        for pid, (pseudonym, days) in sorted(keys.patients.items()):
            w.writerow([pid, pseudonym, days])
        write_text(Path(mapping), buf.getvalue())
    return {"files": written, "patients": len(keys.patients), **counts, "skipped_not_dicom": skipped,
            "burned_in_annotation_to_check": burned, "mapping": str(mapping) if mapping else None,
            "profile": "PS3.15 Annex E basic + modified dates" + (" + patient characteristics" if keep_characteristics
                                                                   else ""), "date": date.today().isoformat()}
