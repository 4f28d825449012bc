"""The consistency study's other classifiers (Hacohen & Weinshall §5, Figs 6-7): AdaBoost with linear weak
learners and six scikit-learn classifiers against the CNN ensemble.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lossatlas.analysis.consistency_scores import nearest_checkpoint, pearson_r, read_scores
from lossatlas.io import atomic_path

log = logging.getLogger(__name__)


def _classifier(name: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import Perceptron
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    # scikit-learn defaults: the paper states no hyper-parameters (§5).
    makers = {
        "svm": lambda: SVC(),
        "knn": lambda: KNeighborsClassifier(),
        "perceptron": lambda: Perceptron(random_state=seed),
        "decision_tree": lambda: DecisionTreeClassifier(random_state=seed),
        "random_forest": lambda: RandomForestClassifier(random_state=seed, n_jobs=1),
        "gaussian_nb": lambda: GaussianNB(),
    }
    if name not in makers:
        raise ValueError(f"unknown classifier {name!r} (choose from {sorted(makers)})")
    return makers[name]()



def adaboost_staged_correct(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                            n_learners: int, weak_c: float, seed: int) -> np.ndarray:
    """(k, n) correctness of the k-learner AdaBoost ensemble, k = 1..n_learners, on (x_eval, y_eval).

    Multi-class AdaBoost = SAMME (Hastie et al. 2009, the paper's ref. [24]) with linear weak learners
    (multinomial logistic regression, inverse regularisation ``weak_c``). If boosting stops early (a perfect
    or useless weak learner), the last ensemble stands for the remaining k.
    """
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.linear_model import LogisticRegression

    boost = AdaBoostClassifier(estimator=LogisticRegression(C=weak_c, max_iter=500), n_estimators=n_learners,
                               random_state=seed)
    boost.fit(x_train, y_train)
    rows = [pred == y_eval for pred in boost.staged_predict(x_eval)]
    while len(rows) < n_learners:
        rows.append(rows[-1])
    return np.array(rows)



def tercile_groups(speed: np.ndarray) -> np.ndarray:
    """0 = difficult, 1 = intermediate, 2 = easy: equal thirds of the examples by CNN speed of learning
    (ties by position). The paper groups by 'the consistency score of a CNN' without thresholds (Fig 6a)."""
    order = np.argsort(np.asarray(speed), kind="stable")
    groups = np.empty(len(order), dtype=np.int64)
    for g, part in enumerate(np.array_split(order, 3)):
        groups[part] = g
    return groups



def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)



def other_classifiers(dataset_path: str | Path, scores_path: str | Path, out_path: str | Path, *,
                      classifiers: Sequence[str], adaboost_learners: int, adaboost_c: float,
                      cnn_epochs: Sequence[float], seed: int = 0) -> None:
    """§5 and Figs 6-7: AdaBoost with k linear weak learners and six scikit-learn classifiers, trained on the
    train split of the CNN ensemble's dataset (flattened inputs as stored), evaluated on the test split, and
    compared with the CNN ensemble (``scores_path``) on the same test examples.

    Writes ``classifiers.h5``: ``adaboost/correct`` (k, n) bool; ``adaboost/accuracy`` (k,);
    ``adaboost/group_accuracy`` (3, k) for difficult / intermediate / easy (:func:`tercile_groups`);
    ``adaboost/difficulty`` (n,) = mean over k of correctness (the accuracy over the number of weak
    learners, §5); ``adaboost`` attrs ``r``, ``p`` against the CNN speed of learning. Per classifier
    ``clf/<name>/correct`` (n,) and attr ``accuracy``. ``fig07/epochs`` (E,) the CNN checkpoints used,
    ``fig07/frac_cnn_correct`` and ``fig07/frac_cnn_wrong`` (E, n_classifiers): the fraction each classifier
    gets right among test examples the CNN classifies correctly (c^e > 0.5, i.e. a majority of the ensemble;
    the paper does not say) / wrongly.
    """
    import h5py

    from lossatlas.datasets import load_dataset

    data = load_dataset(dataset_path)
    scores = read_scores(scores_path)
    if not np.array_equal(scores["test"]["id"], data.id_test):
        raise ValueError(f"{scores_path}: test ids differ from {dataset_path}")
    x_tr, y_tr, x_te, y_te = _flat(data.x_train), data.y_train, _flat(data.x_test), data.y_test
    speed = scores["test"]["speed"]
    correct = adaboost_staged_correct(x_tr, y_tr, x_te, y_te, adaboost_learners, adaboost_c, seed)
    groups = tercile_groups(speed)
    difficulty = correct.mean(axis=0)
    r, p = pearson_r(difficulty, speed)
    fig07_idx = [nearest_checkpoint(scores["epoch"], e) for e in cnn_epochs]
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group("adaboost")
        g["correct"] = correct
        g["accuracy"] = correct.mean(axis=1)
        g["group_accuracy"] = np.array([correct[:, groups == k].mean(axis=1) for k in range(3)])
        g["difficulty"] = difficulty
        g["cnn_speed"] = speed
        g.attrs.update(r=r, p=p, weak_c=adaboost_c, n_learners=adaboost_learners)
        f["fig07/epochs"] = scores["epoch"][fig07_idx]
        frac_right = np.full((len(fig07_idx), len(classifiers)), np.nan)
        frac_wrong = np.full_like(frac_right, np.nan)
        for j, name in enumerate(classifiers):
            clf = _classifier(name, seed).fit(x_tr, y_tr)
            ok = clf.predict(x_te) == y_te
            f[f"clf/{name}/correct"] = ok
            f[f"clf/{name}"].attrs["accuracy"] = float(ok.mean())
            for i, ci in enumerate(fig07_idx):
                cnn_ok = scores["test"]["consistency"][ci] > 0.5
                if cnn_ok.any():
                    frac_right[i, j] = ok[cnn_ok].mean()
                if (~cnn_ok).any():
                    frac_wrong[i, j] = ok[~cnn_ok].mean()
            log.info("%s: test accuracy %.3f", name, ok.mean())
        f["fig07/frac_cnn_correct"] = frac_right
        f["fig07/frac_cnn_wrong"] = frac_wrong
        f.attrs["classifiers"] = json.dumps(list(classifiers))
        f.attrs["cnn_test_accuracy"] = float(scores["test"]["accuracy"][-1])
    log.info("AdaBoost (%d learners): final accuracy %.3f, r with CNN speed %.3f", adaboost_learners,
             correct[-1].mean(), r)


def read_classifiers(path: str | Path) -> dict:
    """classifiers.h5 (:func:`other_classifiers`) as plain numbers and arrays."""
    import h5py

    with h5py.File(path, "r") as f:
        names = json.loads(f.attrs["classifiers"])
        return {
            "names": names,
            "acc": {n: float(f[f"clf/{n}"].attrs["accuracy"]) for n in names},
            "boost_acc": f["adaboost/accuracy"][:],
            "group_acc": f["adaboost/group_accuracy"][:],
            "difficulty": f["adaboost/difficulty"][:],
            "cnn_speed": f["adaboost/cnn_speed"][:],
            "r": float(f["adaboost"].attrs["r"]),
            "p": float(f["adaboost"].attrs["p"]),
            "fig07_epochs": f["fig07/epochs"][:],
            "frac_right": f["fig07/frac_cnn_correct"][:],
            "frac_wrong": f["fig07/frac_cnn_wrong"][:],
            "cnn_acc": float(f.attrs["cnn_test_accuracy"]),
        }
