# TDFusion, SegFormer on FMB (15 classes), paper settings; 300x400 task view.
# Data: <data_root>/FMB.
_base_ = [
    './_base_/models/tdfusion_segformer.py',
    '../../../configs/_base_/datasets/fmb_seg.py',
    './_base_/schedules/tdfusion_paper.py',
    './_base_/default_runtime.py',
]
model = dict(task=dict(num_classes=15, class_names={{_base_.metainfo.classes}}))
