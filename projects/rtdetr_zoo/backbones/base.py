"""The backbone contract shared by every rtdetr_zoo backbone.

Every backbone is a stem followed by ``num_stages`` stages. It declares one
per-stage table, :attr:`BackboneContract.feature_info` (after timm's
``feature_info``): the channels and the stride of each stage's output. From
that table and the constructor arguments come, in one place:

* ``out_indices``: the stages to output, 0-based over the backbone's own
  stages, negative values counting from the end (``-1`` is the last stage);
* ``out_channels`` / ``out_strides``: channels and strides of the selected
  outputs, what a neck's ``in_channels`` must match;
* ``frozen_stages``: ``-1`` freezes nothing, ``k >= 0`` the stem and the
  first ``k`` stages (parameters without gradient, modules in eval mode);
* ``norm_eval``: every BatchNorm stays in eval mode while training.

A backbone says which sub-modules form its stem and each stage by
:meth:`BackboneContract.stage_module_names` (default ``stem`` and
``stages.i``), and names its smallest published setting in
:attr:`BackboneContract.smallest_cfg` (what the contract test builds).
Output ``i`` of an input (B, C, H, W) has the shape
(B, out_channels[i], ceil(H / out_strides[i]), ceil(W / out_strides[i])).
"""
from typing import Dict, List, Sequence, Tuple, Union

from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..engine.checkpoint import extract_state_dict, read_checkpoint

#: A pretrained checkpoint must provide at least this fraction of the
#: backbone's tensors (BatchNorm's ``num_batches_tracked`` not counted).
MIN_LOADED_FRACTION = 0.95


class BackboneContract:
    """Mixin that implements the contract; put it first among the bases.

    A subclass calls :meth:`set_stage_args` before it builds anything that
    depends on the selected outputs, :meth:`set_feature_info` once its stages
    exist, and :meth:`apply_frozen_stages` at the end of ``__init__``.
    """

    #: Constructor arguments of the smallest published setting.
    smallest_cfg = None

    def set_stage_args(self, out_indices: Union[int, Sequence[int]],
                       frozen_stages: int, norm_eval: bool,
                       num_stages: int) -> Tuple[int, ...]:
        """Validate and store the stage selection.

        ``out_indices`` (an int or a sequence) are resolved to non-negative
        stage indices, which must be unique and increasing; ``frozen_stages``
        must be in ``-1..num_stages``. Errors name the backbone, the argument
        and the value.

        Returns:
            tuple[int]: the resolved ``out_indices``.
        """
        name = type(self).__name__
        given = (out_indices, ) if isinstance(out_indices, int) else tuple(
            out_indices)
        if not given or not all(isinstance(i, int) for i in given):
            raise ValueError(f'{name} out_indices must be a non-empty '
                             f'sequence of ints, got {out_indices!r}')
        bad = [i for i in given if not -num_stages <= i < num_stages]
        if bad:
            raise ValueError(
                f'{name} out_indices {given} has {bad} outside '
                f'-{num_stages}..{num_stages - 1} (it has {num_stages} '
                f'stages)')
        resolved = tuple(i % num_stages for i in given)
        if any(a >= b for a, b in zip(resolved, resolved[1:])):
            raise ValueError(
                f'{name} out_indices must be increasing and unique once '
                f'negative values are resolved, got {given} -> {resolved}')
        if not isinstance(frozen_stages, int) or not (
                -1 <= frozen_stages <= num_stages):
            raise ValueError(f'{name} frozen_stages must be an int in '
                             f'-1..{num_stages}, got {frozen_stages!r}')
        self.num_stages = num_stages
        self.out_indices = resolved
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        return resolved

    def set_feature_info(self, channels: Sequence[int],
                         strides: Sequence[int]) -> None:
        """Declare every stage's output channels and stride (all stages)."""
        if len(channels) != self.num_stages or len(strides) != (
                self.num_stages):
            raise ValueError(
                f'{type(self).__name__}: feature info needs one entry per '
                f'stage ({self.num_stages}), got channels {list(channels)} '
                f'and strides {list(strides)}')
        self.feature_info = tuple(
            dict(num_chs=int(c), reduction=int(s), stage=i)
            for i, (c, s) in enumerate(zip(channels, strides)))

    @property
    def out_channels(self) -> List[int]:
        """Channels of the selected outputs, in ``out_indices`` order."""
        return [self.feature_info[i]['num_chs'] for i in self.out_indices]

    @property
    def out_strides(self) -> List[int]:
        """Strides of the selected outputs, in ``out_indices`` order."""
        return [self.feature_info[i]['reduction'] for i in self.out_indices]

    def stage_module_names(self) -> Tuple[List[str], List[List[str]]]:
        """``(stem names, [names of stage i for every stage])``: the
        sub-modules that ``frozen_stages`` freezes, by name."""
        return ['stem'], [[f'stages.{i}'] for i in range(self.num_stages)]

    def frozen_modules(self) -> List[nn.Module]:
        """The modules of the stem and the first ``frozen_stages`` stages."""
        if self.frozen_stages < 0:
            return []
        stem, stages = self.stage_module_names()
        names = stem + [n for stage in stages[:self.frozen_stages]
                        for n in stage]
        return [self.get_submodule(n) for n in names]

    def apply_frozen_stages(self) -> None:
        """Put the frozen modules in eval mode and stop their gradients."""
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'BackboneContract':
        """Set train / eval mode, keeping frozen stages and (with
        ``norm_eval``) every BatchNorm in eval mode."""
        super().train(mode)
        self.apply_frozen_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward_stages(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Run the stem and the stages up to the last selected one.

        Returns the selected stage outputs as a tuple.
        """
        x = self.stem(x)
        outs = []
        for i in range(self.out_indices[-1] + 1):
            x = self.stages[i](x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, C, H, W) -> tuple of (B, out_channels[i], ceil(H / s_i),
        ceil(W / s_i)) with ``s_i = out_strides[i]``."""
        return self.forward_stages(x)

    def default_init(self) -> None:
        """The backbone's own initialisation when no checkpoint is loaded
        (nothing by default: the layers' constructors initialise them)."""

    def init_weights(self) -> None:
        """Load a ``Pretrained`` init_cfg with :meth:`load_pretrained`;
        otherwise run :meth:`default_init`, then any other init_cfg."""
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            self.load_pretrained(init_cfg)
            self._is_init = True
            return
        self.default_init()
        if init_cfg is None:
            self._is_init = True
        else:
            BaseModule.init_weights(self)

    def convert_pretrained(
            self, state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Map a foreign checkpoint layout to ours (identity by default)."""
        return state_dict

    def load_pretrained(self, init_cfg: dict) -> None:
        """Load ``dict(type='Pretrained', checkpoint=..., prefix=...)``.

        The checkpoint (file or URL) is read by
        :func:`~rtdetr_zoo.engine.checkpoint.read_checkpoint`, unwrapped
        (``state_dict`` / ``model`` / EMA / ``module.``) and cut to the keys
        under ``prefix`` (e.g. ``'backbone.'`` of a detector or classifier
        checkpoint) by :func:`~rtdetr_zoo.engine.extract_state_dict`,
        mapped to our layout by :meth:`convert_pretrained`, then loaded after
        :meth:`default_init` (so what is not loaded keeps that). The log says
        how many tensors were loaded and lists every one that was not.

        Raises:
            ValueError: the checkpoint provides fewer than
                :data:`MIN_LOADED_FRACTION` of the backbone's tensors (wrong
                family or arch); names the file and the first unmatched keys.
            RuntimeError / FileNotFoundError: the file or URL cannot be read;
                says how to use a local file or train from scratch.
        """
        name = type(self).__name__
        logger = MMLogger.get_current_instance()
        source = init_cfg.get('checkpoint')
        if not source:
            raise KeyError(f'{name} init_cfg of type Pretrained needs a '
                           f'"checkpoint", got {dict(init_cfg)}')
        try:
            checkpoint = read_checkpoint(source, logger=logger)
        except (RuntimeError, FileNotFoundError) as err:
            raise type(err)(
                f'{name} pretrained weights: {err}. Point the config at a '
                f'local copy (--cfg-options model.backbone.init_cfg.'
                f'checkpoint=PATH) or train the backbone from scratch '
                f'(--cfg-options model.backbone.init_cfg=None)') from err
        state = self.convert_pretrained(
            extract_state_dict(checkpoint, init_cfg.get('prefix'), source))
        own = {k: v for k, v in self.state_dict().items()
               if not k.endswith('num_batches_tracked')}
        loadable = {k: v for k, v in state.items()
                    if k in own and v.shape == own[k].shape}
        not_loaded = [k for k in own if k not in loadable]
        unused = [k for k in state if k not in loadable
                  and not k.endswith('num_batches_tracked')]
        if len(loadable) < MIN_LOADED_FRACTION * len(own):
            mismatched = [f'{k} {tuple(state[k].shape)} vs ours '
                          f'{tuple(own[k].shape)}'
                          for k in state if k in own and k not in loadable]
            raise ValueError(
                f'{name}: checkpoint {source} provides {len(loadable)} of '
                f'the backbone\'s {len(own)} tensors (less than '
                f'{MIN_LOADED_FRACTION:.0%}): is it a checkpoint of this '
                f'backbone and arch? First tensors not loaded: '
                f'{not_loaded[:5]}; first checkpoint keys not used: '
                f'{unused[:5]}' + (f'; shape mismatches: {mismatched[:3]}'
                                   if mismatched else ''))
        self.default_init()
        self.load_state_dict(loadable, strict=False)
        logger.info(f'{name}: loaded {len(loadable)}/{len(own)} tensors from '
                    f'{source}')
        if not_loaded:
            logger.warning(f'{name}: {len(not_loaded)} tensors not in '
                           f'{source} keep their initialisation: {not_loaded}')
        if unused:
            logger.info(f'{name}: {len(unused)} tensors of {source} not '
                        f'used: {unused}')
