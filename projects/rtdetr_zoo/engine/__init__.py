"""Training-engine components: checkpoint reading and the conversion of
official RT-DETR and Ultralytics layouts (on load and to a file), the
runner, optimizer wrappers and parameter groups, hooks, DEIM's learning-rate
schedule, CPU DDP."""
from .checkpoint import (CHECKPOINT_SAFE_GLOBALS,  # noqa: F401
                         ENCODED_TYPE_KEY, checkpoint_safe_globals,
                         decode_checkpoint_objects,
                         encode_checkpoint_objects, extract_state_dict,
                         read_checkpoint, register_checkpoint_safe_globals)
from .official_converter import (  # noqa: F401
    checkpoint_layout, convert_checkpoint_file, convert_checkpoint_layout,
    convert_layout_pre_hook, convert_official_state_dict,
    convert_ultralytics_state_dict)
from .ultralytics_checkpoint import read_ultralytics_checkpoint  # noqa: F401
from .distributed import (CPUDistributedDataParallel,  # noqa: F401
                          setup_cpu_distributed)
from .hooks import (DatasetCheckHook, NonFiniteLossHook,  # noqa: F401
                    RandomStateHook, StopAugmentationHook)
from .optim_wrapper import (CPUCapableAmpOptimWrapper,  # noqa: F401
                            NonFiniteGuardAmpOptimWrapper,
                            NonFiniteGuardMixin, NonFiniteGuardOptimWrapper,
                            accelerator_available)
from .param_groups import RegexParamGroupsConstructor  # noqa: F401
from .runner import RTDETRRunner, WeightsOnlyCheckpointHook  # noqa: F401
from .schedulers import FlatCosineLR, flat_cosine_value  # noqa: F401
