"""Distributed training on CPUs (gloo), which mmengine 0.10 cannot start:
its launcher calls ``torch.cuda.set_device`` and its runner passes
``device_ids=[LOCAL_RANK]``, which ``DistributedDataParallel`` rejects for a
CPU module."""
from typing import Optional, Sequence

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import nn


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for a model on the CPU: the
    ``device_ids`` the runner injects are dropped. (Registered in mmengine's
    root registry, where the runner looks model wrappers up.)"""

    def __init__(self,
                 module: nn.Module,
                 device_ids: Optional[Sequence[int]] = None,
                 **kwargs) -> None:
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg: Config) -> None:
    """Start the gloo process group and select
    :class:`CPUDistributedDataParallel` when training with a launcher on a
    machine without CUDA (the runner then skips its own initialisation).

    Keeps the config's ``model_wrapper_cfg`` options and
    ``find_unused_parameters``; the config's backend is replaced by gloo,
    the only CPU backend.
    """
    if torch.cuda.is_available():
        return
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper['type'] = 'CPUDistributedDataParallel'
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    print_log(f'no CUDA: distributed training on the CPU with gloo, rank '
              f'{torch_dist.get_rank()} of {torch_dist.get_world_size()}',
              logger='current')
