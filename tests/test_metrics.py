"""Metrics against scikit-learn on fixed inputs, ECE on a known case, the results table."""
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from visfuse_utils import metrics as M


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), 200)
    probs[np.arange(100), labels[:100]] += 1
    probs /= probs.sum(1, keepdims=True)
    m = M.classification_metrics(labels, probs)
    assert np.isclose(m["accuracy"], accuracy_score(labels, probs.argmax(1)))
    assert np.isclose(m["macro_f1"], f1_score(labels, probs.argmax(1), average="macro"))
    assert np.isclose(m["auroc"], roc_auc_score(labels, probs, multi_class="ovr"))


def test_ece_known_answer():
    # confidences 0.9 in one bin with 50 % accuracy: ECE = |0.5 - 0.9| = 0.4
    probs = np.array([[0.9, 0.1]] * 4)
    labels = np.array([0, 0, 1, 1])
    assert np.isclose(M.expected_calibration_error(labels, probs), 0.4)
    perfect = np.eye(3)[[0, 1, 2]]
    assert M.expected_calibration_error(np.array([0, 1, 2]), perfect) == 0.0


def test_mean_std():
    agg = M.mean_std([{"accuracy": 0.5, "n_params": 10}, {"accuracy": 0.7, "n_params": 10}])
    assert np.isclose(agg["accuracy"], 0.6) and np.isclose(agg["accuracy_std"], np.std([0.5, 0.7], ddof=1))
    assert agg["n_params"] == 10 and agg["n_seeds"] == 2


def test_table_puts_the_course_columns_first():
    frame = M.table({"a": {"extra": 1.0, "ece": 0.1, "accuracy": 0.9}, "b": {"accuracy": 0.5}})
    assert list(frame.columns) == ["accuracy", "ece", "extra"] and frame.index.name == "model"
    assert np.isnan(frame.loc["b", "ece"])
