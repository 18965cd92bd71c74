# Mini run on ../shared/data/msrs_det (detection, 120 train / 60 test pairs), sized
# for 2 CPU cores (about 10 minutes): 2 epochs x (6 meta + 24 fusion steps).
_base_ = [
    './_base_/models/tdfusion_yolov8.py',
    '../../../configs/_base_/datasets/msrs_det_mini.py',
    './_base_/schedules/tdfusion_mini.py',
    './_base_/default_runtime.py',
]
model = dict(task=dict(num_classes=3, class_names={{_base_.metainfo.classes}}, seed=0))
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=20))
custom_hooks = [
    dict(type='TrainingStateHook'),
    dict(type='FusionVisualizationHook', interval=20, max_samples=2),
    dict(type='TaskMetricHook'),
]
