"""Late fusion by a linear SVM (Simonyan and Zisserman, NIPS 2014), the "late-svm" fusion.

The towers are trained alone as for "late"; then scikit-learn's LinearSVC (one-vs-rest, squared
hinge) learns on windows of the training split, each described by the stacked, L2-normalised
softmax scores of the two towers (twostream.model.svm_features, (N, 2K)). Its weights land in
the head's buffers ``svm_coef`` (K, 2K) and ``svm_intercept`` (K,): plain tensors in the model
file's state_dict, no pickled estimator, and the runtime's head is one matmul, so scikit-learn
is needed to fit only, never to run.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from twostream.batches import ClipFeatures, gather_window
from twostream.errors import DataError
from twostream.model import TwoStreamNet, svm_features
from twostream.preprocess import WindowPlan

SVM_C = 1.0  # LinearSVC's default: the scores are normalised, so one C suits every K


@torch.inference_mode()
def window_logits(model: TwoStreamNet, feats: Iterable[ClipFeatures], per_clip: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-tower logits (N, K) x 2 and labels (N,) of up to ``per_clip`` windows per clip at the
    run-time stride, on the CPU; the head runs where ``model`` is. ``feats`` is read once, one
    clip at a time (it may compute each clip's features as it is read)."""
    contract = model.contract
    device = next(model.head.parameters()).device
    plan = WindowPlan.of(contract)
    spatial, temporal, labels = [], [], []
    for f in feats:
        ends = plan.spread_ends(len(f.spatial), per_clip)
        if not ends:
            continue
        pairs = [gather_window(f, end, contract, contract.stride) for end in ends]
        s_logits, t_logits = model.head.tower_logits(torch.stack([p[0] for p in pairs]).to(device),
                                                     torch.stack([p[1] for p in pairs]).to(device))
        spatial.append(s_logits.float().cpu())
        temporal.append(t_logits.float().cpu())
        labels += [f.label] * len(ends)
    if not labels:
        raise DataError("no training window for the SVM: every clip is shorter than one window")
    return torch.cat(spatial), torch.cat(temporal), torch.tensor(labels)


def fit_svm(spatial: torch.Tensor, temporal: torch.Tensor, labels: torch.Tensor, num_classes: int,
            c: float = SVM_C, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """LinearSVC on svm_features(spatial, temporal) -> (coef (K, 2K), intercept (K,)) float32,
    row k scoring class k. DataError when a class has no window (its row would be missing)."""
    from sklearn.svm import LinearSVC  # fitting only: the runtime's head is a matmul

    x = svm_features(spatial.float(), temporal.float()).numpy()
    y = labels.numpy()
    missing = sorted(set(range(num_classes)) - set(y.tolist()))
    if missing:
        raise DataError(f"the SVM fusion needs training windows of every class; none of class index(es) {missing}")
    svm = LinearSVC(C=c, random_state=seed).fit(x, y)
    coef, intercept = svm.coef_, svm.intercept_
    if num_classes == 2:  # one decision function for two classes, positive for class 1
        coef, intercept = np.stack([-coef[0], coef[0]]) / 2, np.array([-intercept[0], intercept[0]]) / 2
    return coef.astype(np.float32), intercept.astype(np.float32)


def install_svm(model: TwoStreamNet, coef: np.ndarray, intercept: np.ndarray) -> None:
    """Write fitted weights into a "late-svm" head's buffers (where the head is)."""
    head = model.head
    if head.fusion != "late-svm":
        raise ValueError(f"the model's fusion is {head.fusion!r}, not 'late-svm'")
    with torch.no_grad():
        head.svm_coef.copy_(torch.from_numpy(coef))
        head.svm_intercept.copy_(torch.from_numpy(intercept))


def fit_head_svm(model: TwoStreamNet, feats: Iterable[ClipFeatures], per_clip: int = 8, seed: int = 0) -> dict:
    """Fit the SVM on training windows of ``feats`` (training-split clips' tower features) and
    install it; returns the figures a training epoch reports (windows, training top-1 of the
    SVM and of the logits' mean, for comparison)."""
    spatial, temporal, labels = window_logits(model, feats, per_clip)
    coef, intercept = fit_svm(spatial, temporal, labels, model.contract.num_classes, seed=seed)
    install_svm(model, coef, intercept)
    decisions = svm_features(spatial, temporal) @ torch.from_numpy(coef).T + torch.from_numpy(intercept)
    return {"svm_windows": len(labels),
            "svm_train_acc": float((decisions.argmax(1) == labels).float().mean()),
            "mean_train_acc": float(((spatial + temporal).argmax(1) == labels).float().mean())}
