"""Models: torch modules by family plus scikit-learn baselines, all in one registry."""

import dataclasses

from medflow.models import (
    baselines,
    dti,
    effects,
    extraction,
    fusion,
    graph,
    hf,
    sequence,
    survival,
    tabular,
    text,
    timeline,
    vision,
)
from medflow.models.base import Estimator, ModelSpec, build_estimator, load_estimator
from medflow.registry import models as _registry

__all__ = ["Estimator", "ModelSpec", "build_estimator", "load_estimator", "describe"]

_CLASSIFY = frozenset({"binary", "multiclass"})
_ALL = frozenset({"binary", "multiclass", "regression"})
_DEEP = _ALL | {"survival", "multilabel"}  # deep tabular bodies serve survival through the Cox head (DeepSurv)
_IMAGE = _ALL | {"multilabel"}
_SURV = frozenset({"survival"})
_SEG = frozenset({"segmentation"})
_TE = frozenset({"treatment_effect"})

_LR = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "train.weight_decay": {"low": 1e-6, "high": 1e-2,
                                                                                      "log": True}}
_MLP = {"hidden": [32, 256], "depth": [1, 3], "dropout": [0.0, 0.5], **_LR}
_SEQ = {"d": {"choices": [32, 64, 128]}, "layers": [1, 2], "dropout": [0.0, 0.4], **_LR}
SEARCH = {
    "mlp": _MLP, "deepsurv": _MLP, "deephit": {**_MLP, "alpha": [0.0, 1.0]},
    "resnet_mlp": {"d": [32, 256], "n_blocks": [1, 4], "dropout": [0.0, 0.5], **_LR},
    "late_fusion": {"hidden": [8, 64], "dropout": [0.0, 0.5], **_LR},
    "logistic_regression": {"C": {"low": 1e-3, "high": 1e2, "log": True}},
    "linear_regression": {"alpha": {"low": 1e-3, "high": 1e3, "log": True}},
    "random_forest": {"min_samples_leaf": [1, 20], "max_features": {"choices": ["sqrt", 0.3, 1.0]}},
    "mpnn": {"hidden": {"choices": [200, 300, 500]}, "depth": [2, 6], "dropout": [0.0, 0.3],
             "ffn_layers": [1, 3], **_LR},
    "text_cnn": {"d": {"choices": [64, 128, 256]}, "filters": [32, 200], "dropout": [0.0, 0.6], **_LR},
    "bilstm_attention": {"d": {"choices": [64, 128, 256]}, "hidden": {"choices": [64, 128, 256]},
                         "dropout": [0.0, 0.5], **_LR},
    "transformer_encoder": {"d": {"choices": [64, 128]}, "layers": [1, 4], "dropout": [0.0, 0.3], **_LR},
    "gin": {"hidden": {"choices": [100, 200, 300]}, "layers": [2, 6], "dropout": [0.0, 0.3], **_LR},
    "dti": {"hidden": {"choices": [100, 200, 300]}, "filters": {"choices": [16, 32, 64]}, "dropout": [0.0, 0.3],
            **_LR},
    "gradient_boosting": {"learning_rate": {"low": 0.01, "high": 0.3, "log": True}, "max_leaf_nodes": [4, 63],
                          "min_samples_leaf": [5, 50], "l2_regularization": {"low": 1e-6, "high": 1.0, "log": True}},
    "cox_ph": {"alpha": {"low": 1e-3, "high": 1e2, "log": True}},
    "random_survival_forest": {"min_samples_leaf": [3, 30], "max_features": {"choices": ["sqrt", 0.5, 1.0]}},
    "gru": _SEQ, "lstm": _SEQ, "retain": _SEQ, "bag_of_codes_mlp": _SEQ,
    "small_cnn": {"dropout": [0.0, 0.5], **_LR}, "resnet18": _LR, "densenet121": {"dropout": [0.0, 0.5], **_LR},
    "unet": {"num_res_units": [0, 2], **_LR}, "basic_unet": _LR, "segresnet": {"init_filters": [8, 32], **_LR},
    "timeline_transformer": {"d": {"choices": [32, 64, 128]}, "layers": [1, 3], "dropout": [0.0, 0.4], **_LR},
    "fusion_masked": {"d": {"choices": [16, 32, 64]}, "modality_dropout": [0.0, 0.5], "dropout": [0.0, 0.4], **_LR},
    "fusion_attention": {"d": {"choices": [16, 32, 64]}, "modality_dropout": [0.0, 0.5], **_LR},
    "fusion_late": {"d": {"choices": [16, 32, 64]}, "modality_dropout": [0.0, 0.5], **_LR},
    "transformer": {"d": {"choices": [32, 64, 128]}, "layers": [1, 3], "dropout": [0.0, 0.4], **_LR},
    "tarnet": {"hidden": [32, 256], "depth": [1, 3], "dropout": [0.0, 0.3], **_LR},
    "dragonnet": {"hidden": [32, 256], "depth": [1, 3], "alpha": [0.1, 2.0], "beta": [0.1, 2.0], **_LR},
    "cfrnet": {"hidden": [32, 256], "depth": [1, 3], "alpha": {"low": 1e-3, "high": 10.0, "log": True}, **_LR},
}

for _spec in (
    ModelSpec("mlp", "deep", _DEEP, tabular.MLPConfig, tabular.MLP,
              "multilayer perceptron (ReLU, dropout), trained with AdamW and early stopping"),
    ModelSpec("resnet_mlp", "deep", _DEEP, tabular.ResNetConfig, tabular.ResNetMLP,
              "ResNet for tabular data (Gorishniy et al. 2021): residual MLP blocks with BatchNorm", complexity=4),
    ModelSpec("logistic_regression", "baseline", _CLASSIFY | {"multilabel"}, baselines.LogisticConfig,
              baselines.build_logistic, "L2-penalized logistic regression (scikit-learn; one per label for "
              "multilabel); on notes it reads TF-IDF of word 1-2 grams", complexity=1),
    ModelSpec("linear_regression", "baseline", frozenset({"regression"}), baselines.RidgeConfig,
              baselines.build_ridge, "ridge regression (scikit-learn)", complexity=1),
    ModelSpec("gradient_boosting", "baseline", _ALL, baselines.GradientBoostingConfig,
              baselines.build_gradient_boosting, "histogram gradient-boosted trees (scikit-learn)", complexity=2),
    ModelSpec("random_forest", "baseline", _ALL, baselines.RandomForestConfig, baselines.build_random_forest,
              "random forest (scikit-learn); on molecules it reads Morgan bits and/or descriptors (data.mol_features)",
              complexity=2),
    ModelSpec("mpnn", "deep", _DEEP, graph.MPNNConfig, graph.DMPNN,
              "directed message passing network (chemprop's D-MPNN) over RDKit atom/bond features, RDKit "
              "descriptors at the readout", inputs="graphs", complexity=4),
    ModelSpec("gin", "deep", _DEEP, graph.GINConfig, graph.GIN,
              "graph isomorphism network with bond features (GINE), residual, batch norm, sum readout",
              inputs="graphs", complexity=4),
    ModelSpec("dti", "deep", frozenset({"binary", "regression"}), dti.DTIConfig, dti.DTINet,
              "drug-target interaction, two towers: D-MPNN (or Morgan MLP) over the drug, DeepDTA's 1-D CNN over "
              "the target's amino acids (data.molecules.protein_column)", inputs="graphs", complexity=4),
    ModelSpec("text_cnn", "deep", _IMAGE, text.TextCNNConfig, text.TextCNN,
              "CNN over word embeddings (Kim 2014): widths 3/4/5, max over time; long notes pooled over windows",
              inputs="text", complexity=4),
    ModelSpec("bilstm_attention", "deep", _IMAGE, text.BiLSTMConfig, text.BiLSTMAttention,
              "bidirectional LSTM with additive attention; the attention weights explain each prediction",
              inputs="text", complexity=4),
    ModelSpec("transformer_encoder", "deep", _IMAGE, text.TextTransformerConfig, text.TextTransformer,
              "small Transformer encoder trained here (pre-norm, sinusoidal positions, mean + max pooling)",
              inputs="text", complexity=4),
    ModelSpec("context_rules", "baseline", frozenset({"binary", "multilabel"}), extraction.RulesConfig,
              extraction.build_extractor, "finding mentions (lexicon) with ConText negation / uncertainty / history "
              "/ family / hypothetical rules; no training", inputs="text", estimator=extraction.ExtractorEstimator,
              complexity=1),
    ModelSpec("context_learned", "baseline", frozenset({"binary", "multilabel"}), extraction.ExtractorConfig,
              extraction.build_extractor, "finding mentions (lexicon) whose assertion is learned from note labels: "
              "ConText categories + context words, logistic regression, thresholds by cross-validation",
              inputs="text", estimator=extraction.ExtractorEstimator, complexity=1),
    ModelSpec("span_tagger", "baseline", frozenset({"spans"}), extraction.SpanTaggerConfig,
              extraction.build_span_tagger, "span extraction: BIO token tagger (logistic regression over word shape, "
              "affixes, context, dose/unit cues) with constrained Viterbi decoding; ConText assertion on problems",
              inputs="text", estimator=extraction.SpanTaggerEstimator, complexity=1),
    ModelSpec("icd_coder", "baseline", frozenset({"multiclass"}), extraction.ICDCoderConfig,
              extraction.build_icd_coder, "ICD-10-CM coding of notes: every billable code scored by its description "
              "(words and character n-grams, abbreviations expanded) and by the nearest coded training notes",
              inputs="text", estimator=extraction.ICDCoderEstimator, complexity=1),
    ModelSpec("late_fusion", "deep", _DEEP, tabular.LateFusionConfig, tabular.LateFusionNet,
              "late fusion: one encoder per block of columns (e.g. clinical, genomic), joined before the head",
              complexity=4),
    ModelSpec("deepsurv", "deep", _SURV, tabular.MLPConfig, tabular.MLP,
              "DeepSurv (Katzman et al. 2018): MLP on the Cox partial likelihood, Breslow baseline hazard"),
    ModelSpec("deephit", "deep", _SURV, survival.DeepHitConfig, survival.build_deephit_body,
              "DeepHit (Lee et al. 2018): discrete-time survival, likelihood + ranking loss",
              head=survival.deephit_head),
    ModelSpec("cox_ph", "baseline", _SURV, survival.CoxPHConfig, survival.build_cox,
              "ridge-penalized Cox proportional hazards (scikit-survival), hazard ratios with 95% CIs",
              estimator=survival.SurvivalSklearnEstimator, complexity=1),
    ModelSpec("random_survival_forest", "baseline", _SURV, survival.RSFConfig, survival.build_rsf,
              "random survival forest (scikit-survival)", estimator=survival.SurvivalSklearnEstimator, complexity=2),
    ModelSpec("kaplan_meier", "baseline", _SURV, survival.KMConfig, survival.build_km,
              "no-skill reference: one Kaplan-Meier curve for everyone", estimator=survival.SurvivalSklearnEstimator,
              complexity=0),
    ModelSpec("gru", "deep", _ALL, sequence.SequenceConfig, sequence.RNNClassifier,
              "GRU over the event sequence (code + value + time embedding)", inputs="events", complexity=4),
    ModelSpec("lstm", "deep", _ALL, sequence.SequenceConfig, sequence.build_lstm,
              "LSTM over the event sequence", inputs="events", complexity=4),
    ModelSpec("transformer", "deep", _ALL, sequence.TransformerConfig, sequence.TransformerClassifier,
              "Transformer encoder over events (pre-norm, padding mask, mean pooling)", inputs="events", complexity=4),
    ModelSpec("timeline_transformer", "deep", _ALL, timeline.TimelineConfig, timeline.TimelineClassifier,
              "causal Transformer over the timeline (positions, time gaps); the state at the last event before the "
              "prediction time feeds the head; starts from `medflow pretrain` runs (init_from)", inputs="events",
              complexity=4),
    ModelSpec("retain", "deep", _ALL, sequence.SequenceConfig, sequence.RETAIN,
              "RETAIN (Choi et al. 2016): reverse-time attention; per-event contributions explain each "
              "prediction", inputs="events", complexity=4),
    ModelSpec("bag_of_codes_mlp", "deep", _ALL, sequence.SequenceConfig, sequence.BagOfCodesMLP,
              "order-free baseline: mean code/value embedding into an MLP", inputs="events"),
    ModelSpec("hf_classifier", "deep", _CLASSIFY | {"multilabel"}, hf.HFConfig, hf.build_hf_classifier,
              "a Hugging Face encoder from a local folder (params.checkpoint; never downloaded) fine-tuned on notes; "
              "long notes in overlapping windows, max over windows", inputs="text", estimator=hf.HFEstimator,
              complexity=5),
    ModelSpec("fusion_late", "deep", _DEEP, fusion.FusionConfig, fusion.build_late,
              "late fusion: one encoder and logit per modality, summed over the modalities a patient has (product of "
              "experts)",
              inputs="multimodal", complexity=4),
    ModelSpec("fusion_masked", "deep", _DEEP, fusion.FusionConfig, fusion.build_masked,
              "intermediate fusion: per-modality embeddings, a learned vector for each missing one, an MLP; trained "
              "with modality dropout", inputs="multimodal", complexity=4),
    ModelSpec("fusion_attention", "deep", _DEEP, fusion.FusionConfig, fusion.build_attention,
              "cross-attention fusion: a query token attends over the present modalities' tokens (Transformer); "
              "modality dropout", inputs="multimodal", complexity=5),
    ModelSpec("small_cnn", "deep", _IMAGE, vision.SmallCNNConfig, vision.SmallCNN,
              "small CNN on MONAI convolution blocks (2-D or 3-D), global pooling; minutes on 2 CPU cores",
              inputs="images"),
    ModelSpec("resnet18", "deep", _IMAGE, vision.ResNetConfig, vision.build_resnet18,
              "MONAI ResNet-18 (2-D or 3-D)", inputs="images", complexity=4),
    ModelSpec("densenet121", "deep", _IMAGE, vision.DenseNetConfig, vision.build_densenet121,
              "MONAI DenseNet121 (2-D or 3-D)", inputs="images", complexity=4),
    ModelSpec("unet", "deep", _SEG, vision.UNetConfig, vision.build_unet,
              "MONAI UNet (2-D or 3-D, residual units), DiceCE loss; sliding-window inference on large volumes",
              inputs="images", estimator=vision.SegmentationEstimator),
    ModelSpec("segresnet", "deep", _SEG, vision.SegResNetConfig, vision.build_segresnet,
              "MONAI SegResNet (Myronenko 2018; 2-D or 3-D, sizes divisible by 8), DiceCE loss; sliding windows",
              inputs="images", estimator=vision.SegmentationEstimator, complexity=4),
    ModelSpec("basic_unet", "deep", _SEG, vision.BasicUNetConfig, vision.build_basic_unet,
              "MONAI BasicUNet (2-D or 3-D), DiceCE loss; sliding-window inference on large volumes",
              inputs="images", estimator=vision.SegmentationEstimator, complexity=4),
    ModelSpec("s_learner", "baseline", _TE, effects.MetaLearnerConfig, effects.build_meta,
              "S-learner: one gradient-boosting outcome model on (covariates, treatment)",
              estimator=effects.MetaLearnerEstimator, complexity=2),
    ModelSpec("t_learner", "baseline", _TE, effects.MetaLearnerConfig, effects.build_meta,
              "T-learner: one gradient-boosting outcome model per arm", estimator=effects.MetaLearnerEstimator,
              complexity=2),
    ModelSpec("x_learner", "baseline", _TE, effects.MetaLearnerConfig, effects.build_meta,
              "X-learner (Kuenzel et al. 2019): imputed effects regressed per arm, blended by the propensity",
              estimator=effects.MetaLearnerEstimator, complexity=2),
    ModelSpec("tarnet", "deep", _TE, effects.TARNetConfig, effects.build_tarnet,
              "TARNet (Shalit et al. 2017): shared representation, one outcome head per arm"),
    ModelSpec("dragonnet", "deep", _TE, effects.DragonNetConfig, effects.build_dragonnet,
              "DragonNet (Shi et al. 2019): TARNet + propensity head + targeted regularization",
              head=effects.dragonnet_head),
    ModelSpec("cfrnet", "deep", _TE, effects.CFRNetConfig, effects.build_cfrnet,
              "CFRNet (Shalit et al. 2017): TARNet + Wasserstein (or MMD) balance of the arms' representations",
              head=effects.cfrnet_head, complexity=4),
):
    _registry.register(_spec.name)(dataclasses.replace(_spec, search=SEARCH.get(_spec.name)))


def describe() -> list[dict[str, str]]:
    """One row per registered model, for `medflow models`."""
    return [{"name": n, "family": s.family, "inputs": s.inputs, "tasks": ", ".join(sorted(s.task_kinds)),
             "complexity": str(s.complexity), "description": s.description}
            for n, s in _registry.items()]
