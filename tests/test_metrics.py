"""Metrics against scikit-learn on fixed inputs, ECE on a known case, the results table."""
import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

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
    assert np.isclose(m["balanced_accuracy"], balanced_accuracy_score(labels, probs.argmax(1)))


def test_imbalanced_binary_set_a_majority_guesser_is_at_chance():
    """9:1 labels, a model that always says the common class: accuracy 0.9, balanced accuracy 0.5, the majority rate."""
    labels = np.array([0] * 90 + [1] * 10)
    always_common = np.tile([0.8, 0.2], (100, 1))
    m = M.classification_metrics(labels, always_common)
    assert m["accuracy"] == 0.9 and m["balanced_accuracy"] == 0.5 and m["auroc"] == 0.5
    assert M.majority_rate(labels) == 0.9
    assert np.isclose(M.classification_metrics(labels, np.eye(2)[labels])["balanced_accuracy"], 1.0)


def test_paired_bootstrap_known_cases():
    right = np.array([1, 1, 1, 0] * 25, float)
    assert M.paired_bootstrap(right, right) == (0.0, 0.0, 0.0)  # the same model: no difference in any resample
    assert M.paired_bootstrap(np.ones(50), np.zeros(50)) == (1.0, 1.0, 1.0)
    mean, low, high = M.paired_bootstrap(right, 1 - right, seed=3)  # 0.75 vs 0.25 right: +0.5, interval around it
    assert mean == 0.5 and 0.3 < low < 0.5 < high < 0.7
    assert M.paired_bootstrap(right, 1 - right, seed=3) == (mean, low, high)  # seeded: reproducible
    try:
        M.paired_bootstrap(right, right[:10])
    except ValueError as err:
        assert "equal-length" in str(err)
    else:
        raise AssertionError("unequal lengths must raise")


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
