"""Optimizer parameter groups chosen by regular expressions on parameter
names, as the official RT-DETR and RT-DETRv2 configs define them."""
import copy
import re
from typing import List, Optional

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from torch import nn

from mmdet.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                            OPTIMIZERS)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class RegexParamGroupsConstructor:
    """Builds the optim wrapper with parameter groups selected by regular
    expressions, like the ``optimizer.params`` list of the official
    RT-DETR(v2) configs (e.g. ``rtdetrv2_r34vd_120e_coco.yml``: the
    backbone at half the learning rate, no weight decay on norms and the
    encoder's and decoder's biases).

    Each group is a dict with ``pattern`` (``re.search`` on the parameter's
    full name) and the optimizer options that differ for it (``lr``,
    ``weight_decay``, ...). A trainable parameter joins the first group
    whose pattern it matches; the others form a last group with the
    optimizer's own options. One log line gives each group's size.

    Config::

        optim_wrapper = dict(
            constructor='RegexParamGroupsConstructor',
            paramwise_cfg=dict(_delete_=True, groups=[
                dict(pattern=r'^backbone\\.', lr=5e-5)]))

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config (``type``,
            ``optimizer``, ``clip_grad`` ...).
        paramwise_cfg (dict): ``groups``: the list of groups.

    Raises:
        ValueError: A group without ``pattern``, a pattern that is not a
            regular expression, or a group no parameter matches.
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        self.optim_wrapper_cfg = copy.deepcopy(optim_wrapper_cfg)
        groups = (paramwise_cfg or {}).get('groups')
        if not groups:
            raise ValueError(
                'RegexParamGroupsConstructor needs paramwise_cfg.groups, a '
                'list of dict(pattern=..., lr=..., weight_decay=...)')
        self.groups = []
        for index, group in enumerate(groups):
            group = dict(group)
            if 'pattern' not in group:
                raise ValueError(
                    f'paramwise_cfg.groups[{index}] has no `pattern`: '
                    f'{group}')
            try:
                pattern = re.compile(group.pop('pattern'))
            except re.error as error:
                raise ValueError(
                    f'paramwise_cfg.groups[{index}].pattern is not a regular '
                    f'expression: {error}') from error
            self.groups.append((pattern, group))

    def param_groups(self, model: nn.Module) -> List[dict]:
        """The optimizer's parameter groups of ``model``: the configured
        ones in order, then the unmatched parameters."""
        selected = [dict(params=[], **options) for _, options in self.groups]
        rest = dict(params=[])
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            for (pattern, _), group in zip(self.groups, selected):
                if pattern.search(name):
                    group['params'].append(param)
                    break
            else:
                rest['params'].append(param)
        for (pattern, _), group in zip(self.groups, selected):
            if not group['params']:
                raise ValueError(
                    f'no trainable parameter matches the optimizer group '
                    f'pattern {pattern.pattern!r}')
        return selected + ([rest] if rest['params'] else [])

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """The optim wrapper of ``model`` (unwrapped from DDP) with the
        groups of :meth:`param_groups`."""
        if is_model_wrapper(model):
            model = model.module
        wrapper_cfg = copy.deepcopy(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = wrapper_cfg.pop('optimizer')
        optimizer_cfg['params'] = self.param_groups(model)
        sizes = ', '.join(
            f'{pattern.pattern!r} {options}: {len(group["params"])}'
            for (pattern, options), group in zip(
                self.groups + [(re.compile('(rest)'), {})],
                optimizer_cfg['params']))
        print_log(f'optimizer parameter groups (tensors): {sizes}',
                  logger='current')
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(wrapper_cfg,
                                    default_args=dict(optimizer=optimizer))
