# msrs_det as a *segmentation* set: weak masks rasterised from the boxes
# (0 background, 1 person, 2 bicycle, 3 car; BoxesToWeakMask). Scores against
# box-shaped masks are not comparable to MSRS's dense 9-class masks.
_base_ = ['./msrs_det_mini.py']
seg_classes = ('background', 'person', 'bicycle', 'car')
train_pipeline = [
    dict(type='BoxesToWeakMask'),
    dict(type='TaskView', size={{_base_.task_size}}),
    dict(type='PairedRandomCrop', size={{_base_.crop_size}}),
]
test_pipeline = [
    dict(type='PairedResize', size={{_base_.test_size}}),
    dict(type='BoxesToWeakMask'),
    dict(type='TaskView', size={{_base_.task_size}}),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_evaluator = [
    dict(type='FusionMetric'),
    dict(type='TaskMetric', keys=['mIoU', 'mAcc', 'aAcc']),
]
