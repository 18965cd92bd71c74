# TDFusion, SegFormer on MSRS (9 classes): the paper's settings (Sec. 4.1):
# L = 50 epochs, M = 200 meta steps, Adam lr 1e-4 (F, T, G), batch 2, alpha = 1,
# 256x256 fusion crops, 240x320 task view. Data: <data_root>/MSRS.
_base_ = [
    './_base_/models/tdfusion_segformer.py',
    '../../../configs/_base_/datasets/msrs_seg.py',
    './_base_/schedules/tdfusion_paper.py',
    './_base_/default_runtime.py',
]
model = dict(task=dict(num_classes=9, class_names={{_base_.metainfo.classes}}))
