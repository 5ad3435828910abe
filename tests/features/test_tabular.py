import numpy as np
import pandas as pd
import pytest

from medflow.data.dataset import FeatureType
from medflow.errors import DataError
from medflow.features.tabular import TabularFeaturizer

TYPES = {"age": FeatureType.NUMERIC, "sex": FeatureType.CATEGORICAL, "smoker": FeatureType.BINARY}


def _frame():
    return pd.DataFrame({"age": [50.0, 60.0, np.nan, 70.0], "sex": ["F", "M", "F", None],
                         "smoker": [0, 1, 1, 0]})


def test_standardize_impute_onehot():
    feat = TabularFeaturizer(TYPES).fit(_frame())
    x = feat.transform(_frame())
    names = feat.output_names
    assert names == ["age", "age__missing", "sex=F", "sex=M", "sex=__unknown__", "sex__missing", "smoker"]
    age = x[:, 0]
    assert np.isclose(age.mean(), 0, atol=1e-6) and np.isclose(age.std(), 1, atol=1e-5)
    assert x[2, 1] == 1 and x[0, 1] == 0  # missing indicator
    assert x[3, 2] == 1  # missing sex imputed with the mode 'F'
    assert len(feat.output_sources) == x.shape[1]


def test_unknown_category_goes_to_unknown_bucket():
    feat = TabularFeaturizer(TYPES).fit(_frame())
    with pytest.warns(UserWarning, match="not seen in training"):
        x = feat.transform(pd.DataFrame({"age": [55.0], "sex": ["X"], "smoker": [1]}))
    assert x[0, feat.output_names.index("sex=__unknown__")] == 1


def test_fitted_on_training_rows_only():
    """Statistics come from the rows passed to fit; extreme test rows do not move them."""
    train = _frame()
    test = pd.DataFrame({"age": [1000.0, 2000.0], "sex": ["M", "M"], "smoker": [1, 1]})
    a = TabularFeaturizer(TYPES).fit(train)
    b = TabularFeaturizer(TYPES).fit(pd.concat([train, test]))
    assert a.state["age"]["mean"] == pytest.approx(60.0)
    assert a.state["age"]["mean"] != b.state["age"]["mean"]
    assert np.allclose(a.transform(train), TabularFeaturizer(TYPES).fit(train).transform(train))


def test_round_trip_is_exact():
    feat = TabularFeaturizer(TYPES).fit(_frame())
    again = TabularFeaturizer.from_dict(feat.to_dict())
    assert np.array_equal(feat.transform(_frame()), again.transform(_frame()))


def test_missing_feature_column_is_named():
    feat = TabularFeaturizer(TYPES).fit(_frame())
    with pytest.raises(DataError, match=r"missing feature column\(s\) \['smoker'\]"):
        feat.transform(pd.DataFrame({"age": [1.0], "sex": ["F"]}), "new.csv")


def test_text_in_numeric_at_prediction():
    feat = TabularFeaturizer(TYPES).fit(_frame())
    with pytest.raises(DataError, match="column 'age' is numeric but row 1 holds 'old'"):
        feat.transform(pd.DataFrame({"age": ["old"], "sex": ["F"], "smoker": [0]}))


def test_datetime_and_text_binary_columns():
    frame = pd.DataFrame({"admit": pd.to_datetime(["2020-01-01", "2020-01-11", None], utc=True),
                          "smoker": ["yes", "no", "yes"]})
    feat = TabularFeaturizer({"admit": FeatureType.DATETIME, "smoker": FeatureType.BINARY}).fit(frame)
    x = feat.transform(frame)
    assert feat.output_names == ["admit", "admit__missing", "smoker"]
    assert x[1, 0] > x[0, 0] and x[2, 1] == 1 and x[:, 2].tolist() == [1, 0, 1]


def test_binary_flag_constant_in_training_is_kept_constant_with_a_warning():
    """A rare flag (e.g. a comorbidity) absent from one training fold must not stop the run at its test part."""
    train = pd.DataFrame({"flag": [0, 0, 0, 0]})
    feat = TabularFeaturizer({"flag": FeatureType.BINARY}).fit(train)
    with pytest.warns(UserWarning, match=r"1 value\(s\) of binary column 'flag' were not seen in training"):
        x = feat.transform(pd.DataFrame({"flag": [0, 1, 0]}))
    assert x[:, 0].tolist() == feat.transform(train)[:3, 0].tolist()  # the unseen 1 reads like the training 0s
    two = TabularFeaturizer({"flag": FeatureType.BINARY}).fit(pd.DataFrame({"flag": ["yes", "no"]}))
    with pytest.raises(DataError, match=r"binary column 'flag' holds 'maybe' at row 2; training saw only"):
        two.transform(pd.DataFrame({"flag": ["yes", "maybe"]}))
