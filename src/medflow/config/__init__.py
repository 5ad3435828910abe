"""The study configuration (the YAML file), parsed at the boundary with unknown keys rejected."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

from medflow.config.steps import BlocksConfig, FederateConfig, ModalitiesConfig, SearchDim, SitesConfig, TuneConfig
from medflow.data.cohort import Cohort
from medflow.data.dataset import FeatureType
from medflow.data.images import ImageSource
from medflow.data.molecules import MoleculeSource
from medflow.data.multimodal import TableSource
from medflow.data.omop_cohort import CohortTable
from medflow.data.rollup import Rollup
from medflow.data.splits import ByPatient, KFold, Scaffold
from medflow.data.text import TextSource
from medflow.errors import ConfigError, did_you_mean
from medflow.evaluate.evaluator import EvaluateConfig
from medflow.tasks.base import Binary, Multiclass, Regression
from medflow.tasks.effects import TreatmentEffect
from medflow.tasks.multilabel import Multilabel
from medflow.tasks.segmentation import Segmentation
from medflow.tasks.spans import SpanExtraction
from medflow.tasks.survival import Survival
from medflow.train.privacy import PrivacyConfig
from medflow.train.trainer import TrainConfig

__all__ = ["StudyConfig", "validate", "DataConfig",
           "ModelEntry", "ExplainConfig", "BlocksConfig", "ModalitiesConfig", "TuneConfig", "SearchDim",
           "SitesConfig", "FederateConfig", "SequenceFeatures", "load_config", "parse_config"]

ModelT = TypeVar("ModelT", bound=BaseModel)

TaskField = Annotated[Binary | Multiclass | Multilabel | Regression | Survival | Segmentation | TreatmentEffect
                      | SpanExtraction, Field(discriminator="kind")]
SplitField = Annotated[ByPatient | KFold | Scaffold, Field(discriminator="kind")]


class EventTableConfig(BaseModel):
    """A CSV/Parquet table of events (one row per event) and which column holds what."""

    model_config = ConfigDict(extra="forbid")
    path: str
    subject_id: str = "subject_id"
    time: str = "time"
    code: str = "code"
    value: str | None = "numeric_value"
    code_prefix: str | None = None


class OmopSource(BaseModel):
    """YAML `data.omop:` an OMOP CDM 5.4 database: a folder of table files (`path`) or a SQLAlchemy `url`
    (postgresql://user@host/db, sqlite:///cdm.db, duckdb:///cdm.duckdb). Keep passwords out of the URL
    (PostgreSQL reads PGPASSWORD); a run writes the URL without its password."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    url: str | None = None
    cdm_schema: str | None = Field(None, description="schema of the clinical tables (e.g. cdm)")
    vocab_schema: str | None = Field(None, description="schema of concept / concept_ancestor (default: cdm_schema)")
    codes: Literal["standard", "source"] = Field("standard", description="codes from standard or source concepts")
    chunk_persons: int = Field(20_000, ge=10, description="persons read per chunk (bounds memory)")

    @model_validator(mode="after")
    def _one(self) -> OmopSource:
        if (self.path is None) == (self.url is None):
            raise ValueError("data.omop needs a folder of table files (path) or a database URL (url), one of the two")
        return self

    @field_serializer("url")
    def _no_password(self, url: str | None) -> str | None:
        from medflow.data.sources.omop_tables import hide_password

        return hide_password(url) if url else url


class SequenceFeatures(BaseModel):
    """How event histories become model inputs (YAML: `data.sequence:`)."""

    model_config = ConfigDict(extra="forbid")
    min_count: int = Field(1, ge=1, description="codes seen fewer times in training become <unknown>")
    max_len: int = Field(256, ge=4, le=100_000, description="most recent events kept per sample")
    lookback_days: float | None = Field(None, gt=0, description="observation window before the prediction time")


class SimulateConfig(BaseModel):
    """Size of the built-in simulated EHR cohort (`data.dataset: ehr_sim`)."""

    model_config = ConfigDict(extra="forbid")
    patients: int = Field(2000, ge=50, le=10_000_000)
    seed: int = 0
    bias_group: str | None = None


class TextFeatures(BaseModel):
    """YAML `data.text_features`: how notes become model inputs (`features.text.TextFeaturizer`)."""

    model_config = ConfigDict(extra="forbid")
    max_len: int = Field(256, ge=8, le=4096, description="tokens per window; longer notes get several windows "
                                                         "that the models pool over (never truncated)")
    min_count: int = Field(2, ge=1, description="a word enters the vocabulary when seen this often in training")
    max_vocab: int = Field(30_000, ge=10)
    tfidf_features: int = Field(100_000, ge=10, description="most frequent word 1-2 grams the TF-IDF baseline reads")


class DataConfig(BaseModel):
    """Where the records come from: a built-in `dataset`, a CSV/Parquet `path`, event data (`meds`, `fhir`,
    `events`) with a `cohort` definition or a MEDS `labels` file, `images` (files, DICOM, NIfTI, .npz) or
    `molecules` (SMILES in CSV / Parquet / .smi, or SDF) or `text` (notes: CSV / Parquet / JSONL / BRAT)."""

    model_config = ConfigDict(extra="forbid")
    dataset: str | None = None
    path: str | None = None
    meds: str | None = None
    fhir: str | None = None
    events: EventTableConfig | None = None
    omop: OmopSource | None = None
    images: ImageSource | None = None
    molecules: MoleculeSource | None = None
    text: TextSource | None = None
    text_features: TextFeatures = TextFeatures()
    tables: list[TableSource] = Field([], description="multimodal: tables joined to the samples by patient and time "
                                                      "(labs, vitals, a gene panel with static: true)")
    max_notes: int = Field(5, ge=1, le=1000, description="multimodal: notes a sample reads (its latest, oldest first)")
    mol_features: list[Literal["morgan", "descriptors"]] = Field(
        ["morgan", "descriptors"], min_length=1,
        description="what fingerprint/descriptor models (random_forest, mlp, ...) read from molecules: Morgan bits "
                    "(radius 2, 2048) and/or scaled RDKit 2-D descriptors")
    cohort: str | Cohort | CohortTable | None = None
    rollup: list[Rollup] = Field([], description="group codes by their ancestors (OMOP concept_ancestor) or by "
                                                 "ICD code prefix, so rare codes share strength")
    labels: str | None = None
    sequence: SequenceFeatures = SequenceFeatures()
    simulate: SimulateConfig = SimulateConfig()
    use_source_splits: bool = True
    stream: bool = False
    as_table: bool = False  # event data as a table of count features (study_data.event_counts_table)
    patient_id: str | None = None
    types: dict[str, FeatureType] = {}
    drop: list[str] = []
    encoding: str | None = None
    synthetic: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [k for k in ("dataset", "path", "meds", "fhir", "events", "omop", "images", "molecules", "text")
                 if getattr(self, k)]
        events = [k for k in given if k in ("meds", "fhir", "events", "omop") or self.dataset == "ehr_sim"]
        if self.is_multimodal:  # one event source at most, beside notes, images and tables
            alone = [k for k in given if k in ("path", "molecules") or (k == "dataset" and self.dataset != "ehr_sim")]
            if alone or len(events) > 1:
                raise ValueError(f"a multimodal study joins one event source (data.meds, data.fhir, data.events, "
                                 f"data.omop), data.text, data.images and data.tables; "
                                 f"{' and '.join('data.' + g for g in alone or events)} cannot join them")
            if not events and self.labels is None:
                raise ValueError("a multimodal study without event data needs data.labels: a table of the samples "
                                 "(patient id, optional prediction_time, the label)")
        elif len(given) > 1:
            raise ValueError(f"give one data source, not {' and '.join('data.' + g for g in given)}")
        if self.cohort is not None and self.labels is not None:
            raise ValueError("give either data.cohort or data.labels (a MEDS label file), not both")
        if self.as_table and not self.is_events:
            raise ValueError("data.as_table turns event data into a table of count features; it needs event data "
                             "(data.meds, data.fhir, data.events or data.dataset: ehr_sim)")
        if self.stream and not (self.meds or self.omop):
            raise ValueError("data.stream reads a MEDS folder one shard at a time (or OMOP through a MEDS copy); "
                             "it needs data.meds or data.omop")
        return self

    @property
    def is_multimodal(self) -> bool:
        """Several modalities per sample: more than one of events, notes and images, or any data.tables."""
        return bool(self.tables) or sum([self.is_events, self.text is not None, self.images is not None]) > 1

    @property
    def is_events(self) -> bool:
        return bool(self.meds or self.fhir or self.events or self.omop or self.dataset == "ehr_sim")


class ModelEntry(BaseModel):
    """A model to train: its registry name and hyper-parameters; deep models may start from another run's
    weights (`init_from`, transfer learning; `models.transfer`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = {}
    init_from: str | None = Field(None, description="a finished run directory whose model weights start training")
    init_model: str | None = Field(None, description="the model in init_from to copy (default: the same name)")
    init_modalities: dict[str, str] = Field({}, description="fusion models: per modality name, a finished run (its "
                                                            "selected model, fold 0) or a weights file whose weights "
                                                            "start that modality's encoder")
    freeze: Literal["none", "backbone"] = "none"
    mode: Literal["finetune", "linear_probe", "frozen_features"] | None = Field(
        None, description="starting from a pretrained run: finetune (all weights train), linear_probe (the encoder "
                          "frozen, the head trained), frozen_features (representations computed once, a "
                          "cross-validated logistic regression on them)")
    allow_pretrain_overlap: bool = Field(False, description="accept test patients that the pretraining saw (the "
                                                            "report states how many)")
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$",
                              description="the name this entry's results go by (default: name); lets one model "
                                          "appear twice, e.g. with and without privacy")
    privacy: PrivacyConfig | None = Field(None, description="DP-SGD for this model only (overrides train.privacy)")
    ensemble: int = Field(1, ge=1, le=20, description="deep models: train this many members with seeds seed, "
                                                      "seed+1, ... and average them; the members' spread is each "
                                                      "prediction's uncertainty")

    @property
    def key(self) -> str:
        """The entry's name in the run directory, metrics and report."""
        return self.label or self.name


class ExplainConfig(BaseModel):
    """How much explaining the study does after training."""

    model_config = ConfigDict(extra="forbid")
    n_repeats: int = Field(5, ge=1, le=100)
    max_records: int = Field(200, ge=1)
    examples: int = Field(5, ge=0, le=50)
    max_features: int = Field(50, ge=1, description="wider inputs: the features most correlated with the model's "
                                                   "output are explained one by one, the rest as one group")


class StudyConfig(BaseModel):
    """Data + task + models + validation plan: everything a run needs, with every default explicit."""

    model_config = ConfigDict(extra="forbid")
    name: str = "study"
    intended_use: str = ""
    data: DataConfig
    task: TaskField
    models: list[str | ModelEntry] = ["mlp", "logistic_regression"]
    split: SplitField = ByPatient()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    explain: ExplainConfig = ExplainConfig()
    compare_blocks: BlocksConfig | None = None
    compare_modalities: ModalitiesConfig | None = None
    tune: TuneConfig | None = None
    federated: FederateConfig | None = None  # `medflow federate`: Flower's options and how sites are formed
    seed: int = 0
    output_dir: str = "runs"

    def model_entries(self) -> list[ModelEntry]:
        return [ModelEntry(name=m) if isinstance(m, str) else m for m in self.models]

    def resolved(self) -> dict[str, Any]:
        """The config with every default written out, models normalized to {name, params} (plus init_from,
        init_model and freeze where a model starts from another run)."""
        d = self.model_dump(mode="json")
        d["models"] = [m.model_dump(mode="json", exclude_defaults=m.init_from is None, exclude={"params"})
                       | {"params": m.params} for m in self.model_entries()]
        return d


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _pick(candidates: list[type[BaseModel]], value: dict[str, Any]) -> type[BaseModel] | None:
    if len(candidates) == 1:
        return candidates[0]
    for cls in candidates:
        kind = cls.model_fields.get("kind")
        if kind is not None and kind.default == value.get("kind"):
            return cls
    return None


def check_keys(data: Any, cls: type[BaseModel], where: str) -> None:
    """Reject unknown keys anywhere in the YAML, naming the key and the nearest valid one."""
    if not isinstance(data, dict):
        return
    fields = cls.model_fields
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{key}'.{did_you_mean(key, fields)} "
                              f"Valid keys here: {', '.join(fields)}.")
    for key, value in data.items():
        annotation = fields[key].annotation
        is_list = typing.get_origin(annotation) is list or any(
            typing.get_origin(a) is list for a in typing.get_args(annotation))
        items = value if is_list and isinstance(value, list) else [value]
        candidates = _models_in(annotation)
        for i, item in enumerate(items):
            if isinstance(item, dict) and candidates:
                sub = _pick(candidates, item)
                if sub is not None:
                    check_keys(item, sub, f"{where}.{key}" + (f"[{i}]" if is_list else ""))


def parse_config(raw: dict[str, Any], source: str = "study") -> StudyConfig:
    """Validate a study dict: unknown keys, then types and values, as ConfigErrors naming the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of study keys, got {type(raw).__name__}.")
    return validate(raw, StudyConfig, source)


def validate(raw: dict[str, Any], cls: type[ModelT], source: str) -> ModelT:
    """A YAML mapping as `cls`: unknown keys, then types and values, as ConfigErrors naming the field."""
    check_keys(raw, cls, source)
    try:
        return cls(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from exc


def load_config(path: str | Path) -> StudyConfig:
    """Read a study YAML; relative data paths are taken from the YAML's folder."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: study file not found.")
    try:
        raw = yaml.safe_load(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 ({exc.reason} at byte {exc.start}); save the study file as UTF-8.") from exc
    except (yaml.YAMLError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ConfigError(f"{p}: not valid YAML ({exc}).") from exc
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{p}: a study file is a mapping (name:, data:, task:, models: ...), not a "
                          f"{type(raw).__name__}.")
    return resolve_paths(parse_config(raw or {}, str(p)), p.parent)


def resolve_paths(cfg: StudyConfig, base: Path) -> StudyConfig:
    """Paths in the config made absolute, relative to `base` (the folder of the YAML file)."""
    for key in ("path", "meds", "fhir", "labels"):
        value = getattr(cfg.data, key)
        if value and not Path(value).is_absolute():
            setattr(cfg.data, key, str((base / value).resolve()))
    if cfg.data.events and not Path(cfg.data.events.path).is_absolute():
        cfg.data.events.path = str((base / cfg.data.events.path).resolve())
    if cfg.data.omop and cfg.data.omop.path and not Path(cfg.data.omop.path).is_absolute():
        cfg.data.omop.path = str((base / cfg.data.omop.path).resolve())
    cohort = cfg.data.cohort
    if isinstance(cohort, CohortTable) and (base / cohort.table).exists() and not Path(cohort.table).is_absolute():
        cohort.table = str((base / cohort.table).resolve())
    if cfg.data.images:
        for key in ("path", "labels"):
            value = getattr(cfg.data.images, key)
            if value and not Path(value).is_absolute():
                setattr(cfg.data.images, key, str((base / value).resolve()))
    for src in [cfg.data.text, *cfg.data.tables]:
        if src is not None and not Path(src.path).is_absolute() and (base / src.path).exists():
            src.path = str((base / src.path).resolve())
    cfg.models = [m.model_copy(update={"init_from": str((base / m.init_from).resolve())})
                  if isinstance(m, ModelEntry) and m.init_from and not Path(m.init_from).is_absolute() else m
                  for m in cfg.models]
    for m in cfg.models:
        if isinstance(m, ModelEntry):
            m.init_modalities = {k: v if Path(v).is_absolute() else str((base / v).resolve())
                                 for k, v in m.init_modalities.items()}
    return cfg
