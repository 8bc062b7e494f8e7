"""AdamW (Loshchilov and Hutter, "Decoupled weight decay regularization"), the word recipe's optimiser.

MXNet 1.9.1 has the fused update (``contrib.adamw_update``) but no registered optimiser for it.
Registered as ``"adamw"``, with PyTorch's ``torch.optim.AdamW`` semantics: each step shrinks the
weights by ``lr * wd`` before the bias-corrected Adam step, where Adam with ``wd`` (MXNet's
``"adam"``) would add ``wd * w`` to the gradient and let the moments rescale it.
"""
from __future__ import annotations

import math

from model.backend import mx


@mx.optimizer.register
class AdamW(mx.optimizer.Adam):
    """``mx.optimizer.Adam`` with decoupled weight decay (default ``wd`` 1e-2, as PyTorch's)."""

    def __init__(self, learning_rate: float = 0.001, wd: float = 0.01, **kwargs) -> None:
        super().__init__(learning_rate=learning_rate, wd=wd, **kwargs)

    def update(self, index, weight, grad, state) -> None:  # noqa: ANN001 (MXNet's optimiser interface)
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        t = self._index_update_count[index]
        correction = math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        mean, var = state
        # w -= eta * (lr' * m / (sqrt(v) + eps) + wd * w) with eta = lr and lr' the bias correction:
        # the Adam step is lr * correction * m / (sqrt(v) + eps), the decay lr * wd * w.
        mx.nd.contrib.adamw_update(weight, grad, mean, var, mx.nd.full((1,), self.rescale_grad, ctx=weight.context),
                                   lr=correction, eta=lr, beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon,
                                   wd=wd, clip_gradient=self.clip_gradient if self.clip_gradient else -1,
                                   out=weight)
