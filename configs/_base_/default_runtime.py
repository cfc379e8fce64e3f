default_scope = 'mmdet'
# rtdetr_zoo.engine.RTDETRRunner: reads checkpoints (load_from, resume) with
# torch's weights-only unpickler plus the types mmengine checkpoints carry.
runner_type = 'RTDETRRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # rtdetr_zoo.engine (docs/robustness.md): num_classes vs dataset check,
    # non-finite loss terms named, random states kept for exact resume.
    dataset_check=dict(type='DatasetCheckHook'),
    non_finite_loss=dict(type='NonFiniteLossHook'),
    random_state=dict(type='RandomStateHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
