# TDFusion, YOLOv8n on LLVIP (person), paper settings; 256x320 task view.
# Data: <data_root>/LLVIP.
_base_ = [
    './_base_/models/tdfusion_yolov8.py',
    '../../../configs/_base_/datasets/llvip_det.py',
    './_base_/schedules/tdfusion_paper.py',
    './_base_/default_runtime.py',
]
model = dict(task=dict(num_classes=1, class_names={{_base_.metainfo.classes}}))
