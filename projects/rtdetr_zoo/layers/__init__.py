"""Building blocks shared by the backbones, necks and the decoder."""
from .aifi import (AIFI, build_aifi,  # noqa: F401
                   sincos_position_embedding_2d)
from .csp_layers import (CSPRepLayer, RepVGGBlock,  # noqa: F401
                         build_registered, conv_bn)
from .elan_layers import RepNCSPELAN4, SCDown  # noqa: F401
from .upsample import build_upsampler, match_size  # noqa: F401
from .deformable_attention import \
    CPUFastMultiScaleDeformableAttention  # noqa: F401
from .msdeform_attn_v2 import MultiScaleDeformableAttentionV2  # noqa: F401
from .rtdetr_decoder import RTDETRTransformerDecoder  # noqa: F401
from .fdr_decoder import (DFINETransformerDecoder,  # noqa: F401
                          FDRDecoderLayer, FDRDeformableAttention)
from .dysample import DySample  # noqa: F401
from .retention import MaSA, RetentionBlock, RetentionStage  # noqa: F401
from .msgdc import CCRI, MSGDC, MSGDCBottleneck  # noqa: F401
from .weighted_fusion import WeightedFusion  # noqa: F401
