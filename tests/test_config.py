import pytest

from medflow.config import load_config, parse_config
from medflow.errors import ConfigError

BASE = {"data": {"dataset": "breast_cancer"}, "task": {"kind": "binary", "label": "malignant"}}


def test_misspelled_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown key 'modles'\. Did you mean 'models'\?"):
        parse_config({**BASE, "modles": ["mlp"]}, "s.yaml")


def test_misspelled_nested_key_names_the_path():
    with pytest.raises(ConfigError, match=r"s\.yaml\.train: unknown key 'max_epoch'\. Did you mean 'max_epochs'\?"):
        parse_config({**BASE, "train": {"max_epoch": 3}}, "s.yaml")
    with pytest.raises(ConfigError, match=r"s\.yaml\.task: unknown key 'lable'\. Did you mean 'label'\?"):
        parse_config({**BASE, "task": {"kind": "binary", "lable": "y"}}, "s.yaml")
    with pytest.raises(ConfigError, match=r"evaluate\.subgroups\[0\]: unknown key 'colum'"):
        parse_config({**BASE, "evaluate": {"subgroups": [{"colum": "age"}]}}, "s.yaml")


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match=r"split\.holdout\.test: Input should be less than 1"):
        parse_config({**BASE, "split": {"kind": "holdout", "test": 1.5}}, "s.yaml")
    with pytest.raises(ConfigError, match="threshold.method 'sensitivity' needs threshold.value"):
        parse_config({**BASE, "evaluate": {"threshold": {"method": "sensitivity"}}}, "s.yaml")


def test_resolved_config_writes_every_default(tmp_path):
    (tmp_path / "s.yaml").write_text("data: {path: d.csv}\ntask: {kind: binary, label: y}\n")
    cfg = load_config(tmp_path / "s.yaml")
    assert cfg.data.path == str(tmp_path / "d.csv")
    resolved = cfg.resolved()
    assert resolved["train"]["max_epochs"] == 200 and resolved["split"]["kind"] == "holdout"
    assert resolved["models"][0] == {"name": "mlp", "params": {}}


def test_invalid_yaml(tmp_path):
    (tmp_path / "s.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "s.yaml")
