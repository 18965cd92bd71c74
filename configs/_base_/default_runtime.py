# The library's runtime (MMEngine): registries, hooks, wrappers, logging.
# custom_imports lists the library's modules; a project's runtime base
# (projects/<name>/configs/_base_/default_runtime.py) adds its own package.
default_scope = 'lfl'
custom_imports = dict(
    imports=[
        'learnable_fusion_loss.generators',
        'learnable_fusion_loss.losses',
        'learnable_fusion_loss.tasks',
        'learnable_fusion_loss.tasks.segformer',
        'learnable_fusion_loss.tasks.yolov8',
        'learnable_fusion_loss.datasets',
        'learnable_fusion_loss.metrics',
        'learnable_fusion_loss.engine',
    ],
    allow_failed_imports=False)

# Data folder; dataset roots below are relative to it. A relative data_root is taken
# relative to the repository root. Override: --cfg-options data_root=... or LFL_DATA_ROOT.
data_root = '../shared/data'

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Iteration checkpoints (F, G, T, every optimiser and scheduler, loop position,
    # RNG states), written atomically; --resume continues from the last one.
    checkpoint=dict(
        type='AtomicCheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=3,
        save_last=True),
)
custom_hooks = [
    dict(type='TrainingStateHook'),
    dict(type='FusionVisualizationHook', interval=100, max_samples=2),
    dict(type='TaskMetricHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# Each optimiser steps on its own (the meta step uses torch.autograd.grad), so
# data parallelism averages gradients before every optimiser step instead of DDP.
model_wrapper_cfg = dict(type='GradientAveragingWrapper')

# tools/train.py adds TensorboardVisBackend when tensorboard is installed.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=True, window_size=10)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
