# msrs_det (<data_root>/msrs_det): 120 train / 60 test MSRS pairs with YOLO boxes
# (person, bicycle, car: msrs_det/classes.txt). CPU-sized views: 128x128 fusion crops, 160x224 task view
# (about 1/3 of 480x640, divisible by 32 for YOLO); test images at 240x320.
dataset_type = 'YoloPairedDetDataset'
det_root = 'msrs_det'
metainfo = dict(classes=('person', 'bicycle', 'car'))
crop_size = 128
task_size = (160, 224)
test_size = (240, 320)
train_pipeline = [
    dict(type='TaskView', size=task_size),
    dict(type='PairedRandomCrop', size=crop_size),
]
test_pipeline = [
    dict(type='PairedResize', size=test_size),
    dict(type='TaskView', size=task_size),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='collate_paired'),
    dataset=dict(type=dataset_type, root=det_root, split='train', metainfo=metainfo,
                 pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='collate_paired'),
    dataset=dict(type=dataset_type, root=det_root, split='test', metainfo=metainfo,
                 pipeline=test_pipeline))
test_evaluator = [
    dict(type='FusionMetric'),
    dict(type='TaskMetric', keys=['mAP50', 'mAP75', 'mAP50-95', 'precision', 'recall']),
]
test_cfg = dict(type='TestLoop')
