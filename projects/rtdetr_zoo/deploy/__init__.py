"""Deployment: end-to-end ONNX export and ONNX Runtime inference, COCO
evaluation of an exported graph, static INT8 quantization, RIFormer
re-parameterisation. The conversion of official RT-DETR and Ultralytics
checkpoints lives beside checkpoint reading
(:mod:`rtdetr_zoo.engine.official_converter`, which model code imports);
its official mapping and file converter are re-exported here for the
deployment scripts."""
from ..engine.official_converter import (  # noqa: F401
    RENAMES, convert_checkpoint_file, convert_official_state_dict,
    rename_official_key)
from .onnx_export import (DEFAULT_OPSET, RTDETROnnxWrapper,  # noqa: F401
                          bgr_to_onnx_input, check_onnx, compare_detections,
                          create_ort_session, default_input_shape,
                          export_onnx, run_ort, switch_to_deploy,
                          test_resize_shape, torch_predict)
from .onnx_eval import (build_evaluator, build_test_dataset,  # noqa: F401
                        check_input_shape, check_one_image_batch,
                        evaluate_onnx, graph_input_shape,
                        iter_onnx_predictions, packed_to_onnx_input)
from .quantize import (DEFAULT_CALIB_IMAGES, DEFAULT_OP_TYPES,  # noqa: F401
                       DEFAULT_SCOPES, ImageCalibrationReader,
                       nodes_in_scopes,
                       quantize_onnx, train_image_paths)
from .riformer_reparam import ReparamError, reparameterize  # noqa: F401

__all__ = [
    'DEFAULT_CALIB_IMAGES', 'DEFAULT_OPSET', 'DEFAULT_OP_TYPES',
    'DEFAULT_SCOPES', 'ImageCalibrationReader', 'RENAMES',
    'RTDETROnnxWrapper', 'ReparamError', 'bgr_to_onnx_input',
    'build_evaluator', 'build_test_dataset', 'check_input_shape',
    'check_one_image_batch',
    'check_onnx', 'compare_detections', 'convert_checkpoint_file',
    'convert_official_state_dict', 'create_ort_session',
    'default_input_shape', 'evaluate_onnx', 'export_onnx',
    'graph_input_shape', 'iter_onnx_predictions',
    'nodes_in_scopes', 'packed_to_onnx_input', 'quantize_onnx',
    'rename_official_key', 'reparameterize', 'run_ort', 'switch_to_deploy',
    'test_resize_shape', 'torch_predict', 'train_image_paths'
]
