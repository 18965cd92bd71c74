# TDFusion, YOLOv8n on M3FD (6 classes), paper settings; 192x256 task view.
# Data: <data_root>/M3FD with id lists M3FD/train.txt, M3FD/test.txt.
_base_ = [
    './_base_/models/tdfusion_yolov8.py',
    '../../../configs/_base_/datasets/m3fd_det.py',
    './_base_/schedules/tdfusion_paper.py',
    './_base_/default_runtime.py',
]
model = dict(task=dict(num_classes=6, class_names={{_base_.metainfo.classes}}))
