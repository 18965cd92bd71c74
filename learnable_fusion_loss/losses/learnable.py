"""A loss whose parameters come from a generator network G."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._checks import check_image, check_same_shape
from ..registry import MODELS, build_module
from .terms import Form, Padding, check_form, check_padding, fusion_loss

#: ``criterion(output, inputs, loss_params) -> {"loss": scalar, <term>: scalar, ...}``
Criterion = Callable[[Tensor, tuple[Tensor, ...], Tensor], dict[str, Tensor]]


@dataclass
class LossOutput:
    """What a :class:`LearnableLoss` returns.

    Attributes:
        loss: the scalar to minimise.
        terms: every named term (``"loss"`` included), for logging.
        loss_params: the generated loss parameters (for fusion: the ``[B, K, H, W]``
            weight maps), to log and visualise.
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    loss_params: Tensor | None = None


class LearnableLoss(nn.Module):
    """``L(output, inputs; G(inputs))``: a criterion parameterised by a generator.

    The generator's parameters are the loss's only parameters; the meta learner
    trains them so that a model trained with this loss does well on a task.

    Args:
        generator: G, an ``nn.Module`` (or a registry config) mapping the inputs
            to the loss parameters.
        criterion: ``criterion(output, inputs, loss_params)`` returning a dict of
            scalar terms with the total under ``"loss"``.
        generator_inputs: the positions of the inputs G sees (e.g. ``(0,)``: a
            restoration loss's G sees the degraded image, not the clean reference);
            default all of them.

    >>> import torch
    >>> def weighted_l1(output, inputs, w):   # inputs = (degraded, clean)
    ...     return {"loss": (w * (output - inputs[1]).abs()).mean()}
    >>> loss = LearnableLoss(torch.nn.Softplus(), weighted_l1, generator_inputs=(0,))
    >>> degraded, clean = torch.zeros(2, 1, 1, 4, 4)
    >>> out = loss(torch.ones(1, 1, 4, 4), degraded, clean)
    >>> round(float(out.loss), 4), tuple(out.loss_params.shape)   # softplus(0) = log 2
    (0.6931, (1, 1, 4, 4))
    """

    def __init__(
        self, generator: nn.Module | dict, criterion: Criterion, generator_inputs: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.generator = build_module(generator)
        self.criterion = criterion
        if generator_inputs is not None:
            generator_inputs = tuple(generator_inputs)
            if not generator_inputs or not all(isinstance(i, int) and i >= 0 for i in generator_inputs):
                raise ValueError(f"generator_inputs must be non-negative input positions, got {generator_inputs}")
        self.generator_inputs = generator_inputs

    def generate(self, *inputs: Tensor) -> Tensor:
        """Run G on the inputs (those at ``generator_inputs``, if given)."""
        if self.generator_inputs is None:
            return self.generator(*inputs)
        if max(self.generator_inputs) >= len(inputs):
            raise ValueError(
                f"generator_inputs={self.generator_inputs} but the loss was given {len(inputs)} inputs")
        return self.generator(*(inputs[i] for i in self.generator_inputs))

    def forward(
        self,
        output: Tensor,
        *inputs: Tensor,
        loss_params: Tensor | None = None,
        detach_params: bool = False,
    ) -> LossOutput:
        """Evaluate the loss.

        Args:
            output: the model output being judged.
            *inputs: the inputs G sees (and the criterion compares against).
            loss_params: precomputed loss parameters; G is not run when given.
            detach_params: compute G without a graph (G frozen: the fusion phase).
        """
        if loss_params is None:
            if detach_params:
                with torch.no_grad():
                    loss_params = self.generate(*inputs)
            else:
                loss_params = self.generate(*inputs)
        elif detach_params:
            loss_params = loss_params.detach()
        terms = self.criterion(output, inputs, loss_params)
        if "loss" not in terms:
            raise KeyError("criterion must return the total under the key 'loss'")
        return LossOutput(loss=terms["loss"], terms=terms, loss_params=loss_params)


@MODELS.register_module()
class LearnableFusionLoss(LearnableLoss):
    """A learnable fusion loss ``L_f = L_int(w) + α L_grad`` with G's weight maps ``w``.

    G maps the two sources to per-pixel softmax weights ``w_a + w_b = 1``; the
    intensity term pulls the fused image towards each source in proportion to its
    weight, and the gradient term keeps the stronger Sobel texture.

    Args:
        generator: G, any module ``(a, b) -> [B, 2, H, W]`` (weight maps that sum
            to one over the two sources), or its registry config.
        alpha: weight of the gradient term (paper: 1).
        intensity_form: ``"paper"`` (default) or ``"public"`` (squared weights).
        gradient_form: ``"paper"`` (default, Sobel magnitude) or ``"public"`` (per axis);
            see :mod:`learnable_fusion_loss.losses.terms`.
        padding: Sobel border, ``"zeros"`` as in the public code, or ``"replicate"``
            (any other value is refused here, when the loss is built).

    >>> from learnable_fusion_loss.generators import ConstantWeights
    >>> LearnableFusionLoss(ConstantWeights(), padding="replicate").padding
    'replicate'
    >>> LearnableFusionLoss(ConstantWeights(), padding="reflect")
    Traceback (most recent call last):
        ...
    ValueError: padding must be one of ('zeros', 'replicate'), got 'reflect'
    """

    def __init__(
        self,
        generator: nn.Module | dict,
        alpha: float = 1.0,
        intensity_form: Form = "paper",
        gradient_form: Form = "paper",
        padding: Padding = "zeros",
    ) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        check_form(intensity_form, "intensity_form")
        check_form(gradient_form, "gradient_form")
        # Validated here rather than at the first forward: a config with a typo must
        # fail when it is built, and with alpha=0 the padding would never be used.
        self.padding = check_padding(padding)
        self.alpha = float(alpha)
        self.intensity_form = intensity_form
        self.gradient_form = gradient_form
        super().__init__(generator, self._criterion)

    def _criterion(self, fused: Tensor, sources: tuple[Tensor, ...], weight_maps: Tensor) -> dict:
        return fusion_loss(
            fused,
            *sources,
            weight_maps=weight_maps,
            alpha=self.alpha,
            intensity_form=self.intensity_form,
            gradient_form=self.gradient_form,
            padding=self.padding,
        )

    def forward(  # type: ignore[override]
        self,
        fused: Tensor,
        a: Tensor,
        b: Tensor,
        loss_params: Tensor | None = None,
        detach_params: bool = False,
    ) -> LossOutput:
        """Loss of ``fused`` against sources ``a`` and ``b`` (each ``[B, 1, H, W]``)."""
        check_image("fused", fused)
        check_image("a", a)
        check_image("b", b)
        check_same_shape(fused=fused, a=a, b=b)
        return super().forward(fused, a, b, loss_params=loss_params, detach_params=detach_params)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, intensity_form={self.intensity_form!r}, "
            f"gradient_form={self.gradient_form!r}, padding={self.padding!r}"
        )
