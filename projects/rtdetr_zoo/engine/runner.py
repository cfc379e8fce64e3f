"""mmengine's Runner, reading checkpoints through :func:`read_checkpoint`
(converting official RT-DETR and Ultralytics layouts on load) and writing
checkpoints that plain ``torch.load`` reads weights-only."""
import logging
from typing import Optional, Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from .checkpoint import (MapLocation, encode_checkpoint_objects,
                         extract_state_dict, read_checkpoint)
from .official_converter import convert_checkpoint_layout


class WeightsOnlyCheckpointHook(Hook):
    """Makes every checkpoint the runner saves readable by plain
    ``torch.load`` with its ``weights_only=True`` default, in any script,
    also one that never imports rtdetr_zoo (mmdet's ``publish_model.py``):
    the numpy arrays and scalars and the message hub's ``HistoryBuffer``
    objects become tagged dicts of tensors and Python values
    (:func:`~rtdetr_zoo.engine.checkpoint.encode_checkpoint_objects`).

    :class:`RTDETRRunner` adds it to every run, after the config's hooks
    and with the lowest priority, so it runs after every other
    ``before_save_checkpoint`` hook and also encodes what they add
    (:class:`~rtdetr_zoo.engine.RandomStateHook`'s numpy random state). The
    live objects (message hub, hooks) are left as they are: the entries it
    changes are new containers. An entry it cannot encode is saved as it is
    and named in a warning (once per entry).

    The restoring half is :func:`~rtdetr_zoo.engine.read_checkpoint`,
    through which :meth:`RTDETRRunner.load_checkpoint` reads before any
    ``after_load_checkpoint`` hook sees the checkpoint; the hook is not in
    the ``HOOKS`` registry because mmengine's own Runner would hand the
    tagged dicts to those hooks and to the message hub.
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._warned = set()

    def before_save_checkpoint(self, runner: Runner,
                               checkpoint: dict) -> None:
        encoded, unconverted = encode_checkpoint_objects(checkpoint)
        checkpoint.update(encoded)
        new = [entry for entry in unconverted if entry not in self._warned]
        if new:
            self._warned.update(new)
            print_log(
                f'checkpoint entries saved as they are, which torch.load '
                f'with weights_only=True refuses unless their types are '
                f'allowed (torch.serialization.add_safe_globals): '
                f'{", ".join(new[:8])}{" ..." if len(new) > 8 else ""}',
                logger='current', level=logging.WARNING)


@RUNNERS.register_module()
class RTDETRRunner(Runner):
    """``Runner`` whose ``load_checkpoint`` (used by ``load_from``, ``resume``
    and ``--resume``) reads with :func:`read_checkpoint`, and whose
    checkpoints load weights-only as they are.

    mmengine 0.10.7's Runner calls ``torch.load`` with torch's default
    ``weights_only=True``, which refuses the numpy arrays and message-hub
    objects of its own checkpoints. Reading through :func:`read_checkpoint`
    allows exactly those types, with clear errors for a missing, truncated
    or undownloadable file, and restores what
    :class:`WeightsOnlyCheckpointHook` (added to every run as the last
    custom hook) encoded when saving, so that mmdet's ``init_detector``,
    ``DetInferencer`` and ``publish_model.py`` read the checkpoints too.
    Selected by ``runner_type = 'RTDETRRunner'``
    (``configs/_base_/default_runtime.py``); registered in mmengine's root
    ``RUNNERS`` so that ``RUNNERS.build(cfg)`` finds it with or without a
    default scope.
    """

    def __init__(self, *args, custom_hooks: Optional[list] = None,
                 **kwargs) -> None:
        """As :class:`mmengine.runner.Runner`, with
        :class:`WeightsOnlyCheckpointHook` after the ``custom_hooks``
        (listed in the hook order the runner logs)."""
        custom_hooks = [*(custom_hooks or []), WeightsOnlyCheckpointHook()]
        super().__init__(*args, custom_hooks=custom_hooks, **kwargs)

    def load_checkpoint(self, filename: str,
                        map_location: MapLocation = 'cpu',
                        strict: bool = False,
                        revise_keys: Sequence[Tuple[str, str]] = (
                            (r'^module.', ''), )) -> dict:
        """Same as :meth:`mmengine.runner.Runner.load_checkpoint`: load
        ``filename`` into the model (non-strict by default, DDP's
        ``module.`` stripped) after the ``after_load_checkpoint`` hooks. A
        checkpoint without ``state_dict`` (bare, the official RT-DETR
        ``{'ema': {'module': ...}}``, an Ultralytics file) is given one
        first, and a foreign layout is converted once, before the hooks, by
        :func:`~rtdetr_zoo.engine.convert_checkpoint_layout` (the EMA copy
        and the model then load the same tensors).

        Returns:
            dict: The whole checkpoint (``meta``, ``message_hub``, ...).
        """
        checkpoint = read_checkpoint(filename, map_location=map_location,
                                     logger=self.logger)
        model = self.model.module if is_model_wrapper(
            self.model) else self.model
        if 'state_dict' in checkpoint:
            weights = checkpoint['state_dict']
        else:
            # The hooks (EMAHook copies ``state_dict``) expect mmengine's
            # layout.
            weights = extract_state_dict(checkpoint, source=filename)
            checkpoint = dict(meta=checkpoint.get('meta', {}))
        checkpoint['state_dict'] = convert_checkpoint_layout(
            weights, model, source=filename)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        checkpoint = _load_checkpoint_to_model(
            model, checkpoint, strict, revise_keys=list(revise_keys))
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint
