# Mini segmentation run on ../shared/data/msrs_det with weak masks rasterised from
# the boxes (4 classes incl. background), sized for 2 CPU cores.
_base_ = [
    './_base_/models/tdfusion_segformer.py',
    '../../../configs/_base_/datasets/msrs_weakseg_mini.py',
    './_base_/schedules/tdfusion_mini.py',
    './_base_/default_runtime.py',
]
model = dict(task=dict(num_classes=4, class_names={{_base_.seg_classes}}, seed=0))
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=20))
custom_hooks = [
    dict(type='TrainingStateHook'),
    dict(type='FusionVisualizationHook', interval=20, max_samples=2),
    dict(type='TaskMetricHook'),
]
