"""Building blocks shared by the backbones, necks and the decoder."""
from .aifi import AIFI, sincos_position_embedding_2d  # noqa: F401
from .csp_layers import CSPRepLayer, RepVGGBlock, conv_bn  # noqa: F401
from .upsample import build_upsample_layer  # noqa: F401
from .rtdetr_decoder import RTDETRTransformerDecoder  # noqa: F401
from .dysample import DySample  # noqa: F401
from .retention import MaSA, RetentionBlock, RetentionStage  # noqa: F401
from .msgdc import CCRI, MSGDC, MSGDCBottleneck  # noqa: F401
from .weighted_fusion import WeightedFusion  # noqa: F401
