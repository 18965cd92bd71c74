# msrs_det for several tasks at once: each sample keeps its YOLO boxes (detection)
# and gets a weak mask rasterised from them (segmentation; 0 background, 1 person,
# 2 bicycle, 3 car; BoxesToWeakMask(keep_boxes=True)). TaskView moves both into the
# task frame. Scores against box-shaped masks are not comparable to MSRS's dense masks.
_base_ = ['./msrs_det_mini.py']
seg_classes = ('background', 'person', 'bicycle', 'car')
train_pipeline = [
    dict(type='BoxesToWeakMask', keep_boxes=True),
    dict(type='TaskView', size={{_base_.task_size}}),
    dict(type='PairedRandomCrop', size={{_base_.crop_size}}),
]
test_pipeline = [
    dict(type='PairedResize', size={{_base_.test_size}}),
    dict(type='BoxesToWeakMask', keep_boxes=True),
    dict(type='TaskView', size={{_base_.task_size}}),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# MultiTask reports each member's metrics as <member>/<metric> (task/seg/mIoU, ...).
test_evaluator = [
    dict(type='FusionMetric'),
    dict(type='TaskMetric', keys=[
        'seg/mIoU', 'seg/mAcc', 'seg/aAcc',
        'det/mAP50', 'det/mAP75', 'det/mAP50-95', 'det/precision', 'det/recall']),
]
