"""A multi-layer perceptron with a configurable activation."""
from mmcv.cnn import build_activation_layer
from mmdet.models.layers import MLP
from mmdet.utils import ConfigType
from torch import Tensor


class ActivatedMLP(MLP):
    """mmdet's :class:`~mmdet.models.layers.MLP` (the same ``layers.<i>``
    Linear layers, so checkpoints keep their keys) with the activation
    between its layers built from ``act_cfg``: ReLU by default, SiLU in
    DEIM's decoder (``mlp_act: silu`` of the official ``rt_deim.yml``).

    Args:
        input_dim (int): Input features.
        hidden_dim (int): Hidden features.
        output_dim (int): Output features.
        num_layers (int): Linear layers (``num_layers - 1`` activations).
        act_cfg (dict): mmcv activation config. Defaults to ReLU.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int,
                 num_layers: int,
                 act_cfg: ConfigType = dict(type='ReLU')) -> None:
        super().__init__(input_dim, hidden_dim, output_dim, num_layers)
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)
