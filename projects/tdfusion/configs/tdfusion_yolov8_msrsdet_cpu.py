# TDFusion at CPU scale on ../shared/data/msrs_det (120 train / 60 test pairs, boxes
# of person / bicycle / car), YOLOv8n from scratch as T. Training resolution is
# reduced: 128x128 fusion crops of the 480x640 pairs and a 160x224 task view (about
# 1/3 of the frame); the paper uses 256x256 crops and 240x320 (MSRS). Schedule:
# _base_/schedules/tdfusion_cpu.py (fusion warm-up 300, task warm-up 200,
# 3 x (10 meta + 60 fusion) steps): about 6 minutes on 2 CPU cores.
# Results (tools/tdfusion_results.py): projects/tdfusion/results_cpu.md.
_base_ = [
    './_base_/models/tdfusion_yolov8.py',
    '../../../configs/_base_/datasets/msrs_det_mini.py',
    './_base_/schedules/tdfusion_cpu.py',
    './_base_/default_runtime.py',
]
model = dict(task=dict(num_classes=3, class_names={{_base_.metainfo.classes}}, seed=0))
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=250, max_keep_ckpts=2))
custom_hooks = [
    dict(type='TrainingStateHook'),
    dict(type='FusionVisualizationHook', interval=250, max_samples=2),
    dict(type='TaskMetricHook'),
]
