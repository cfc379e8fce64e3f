"""Deployment: end-to-end ONNX export and ONNX Runtime inference, RIFormer
re-parameterisation, conversion of official RT-DETR checkpoints."""
from .official_converter import (RENAMES,  # noqa: F401
                                 convert_official_checkpoint,
                                 convert_official_state_dict,
                                 rename_official_key)
from .onnx_export import (DEFAULT_OPSET, RTDETROnnxWrapper,  # noqa: F401
                          bgr_to_onnx_input, check_onnx, compare_detections,
                          create_ort_session, default_input_shape,
                          export_onnx, run_ort, switch_to_deploy,
                          torch_predict)
from .riformer_reparam import ReparamError, reparameterize  # noqa: F401

__all__ = [
    'DEFAULT_OPSET', 'RENAMES', 'RTDETROnnxWrapper', 'ReparamError',
    'bgr_to_onnx_input', 'check_onnx', 'compare_detections',
    'convert_official_checkpoint', 'convert_official_state_dict',
    'create_ort_session', 'default_input_shape', 'export_onnx',
    'rename_official_key', 'reparameterize', 'run_ort', 'switch_to_deploy',
    'torch_predict'
]
