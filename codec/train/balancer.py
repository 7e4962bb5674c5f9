"""Loss balancer (EnCodec section 3.4): each loss gets a share of the gradient at the model output set by its weight.

Instead of summing `w_i * loss_i`, the gradient of every loss with respect to the generated waveform is rescaled to
`total_norm * w_i / sum(w)` using an exponential moving average of its norm, then the rescaled gradients are summed
and back-propagated once through the model. The weights then mean "fraction of the gradient", independent of each
loss's natural scale, which makes the recipe robust to loss scaling.
"""

from __future__ import annotations

import torch


class Balancer:
    """Args:
    weights: loss name -> weight (a fraction of the output gradient once normalised).
    total_norm: norm of the combined gradient at the output.
    ema_decay: decay of the running gradient-norm averages.
    eps: floor on the norms.
    """

    def __init__(self, weights: dict[str, float], total_norm: float = 1.0, ema_decay: float = 0.999,
                 eps: float = 1e-12):
        self.weights = dict(weights)
        self.total_norm = total_norm
        self.ema_decay = ema_decay
        self.eps = eps
        self.norms: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def _ema(self, name: str, value: float) -> float:
        self.norms[name] = self.ema_decay * self.norms.get(name, 0.0) + value
        self.counts[name] = self.ema_decay * self.counts.get(name, 0.0) + 1.0
        return self.norms[name] / self.counts[name]

    def backward(self, losses: dict[str, torch.Tensor], output: torch.Tensor,
                 direct: torch.Tensor | None = None) -> dict[str, float]:
        """Back-propagates the balanced combination of `losses` (each a function of `output`) into the model.

        `direct` is a loss that does not pass through `output` (e.g. the VQ commitment loss): it is added unbalanced.
        Returns the gradient norm each loss had before rescaling (for logging).
        """
        active = {k: v for k, v in losses.items() if self.weights.get(k, 0.0) > 0}
        total_weight = sum(self.weights[k] for k in active)
        combined = torch.zeros_like(output)
        raw_norms = {}
        for name, loss in active.items():
            (grad,) = torch.autograd.grad(loss, output, retain_graph=True)
            norm = grad.norm().item()
            raw_norms[name] = norm
            avg = self._ema(name, norm)
            combined += grad * (self.total_norm * self.weights[name] / total_weight / max(avg, self.eps))
        if direct is not None and direct.requires_grad:
            torch.autograd.backward([output, direct], [combined, torch.ones_like(direct)])
        else:
            output.backward(combined)
        return raw_norms

    def state_dict(self) -> dict:
        return {"norms": dict(self.norms), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.norms = dict(state.get("norms", {}))
        self.counts = dict(state.get("counts", {}))
