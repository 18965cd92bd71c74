# M3FD detection (6 classes), layout root/{Ir,Vis,Annotation}; no official split:
# id lists M3FD/train.txt and M3FD/test.txt (one id a line) choose the pairs.
# TDFusion views: random 256x256 fusion crops, 192x256 task view.
dataset_type = 'M3FDDataset'
# Class ids of the boxes (M3FD fixes no order; this is the configs' choice).
metainfo = dict(classes=('People', 'Car', 'Bus', 'Motorcycle', 'Lamp', 'Truck'))
task_size = (192, 256)
train_pipeline = [
    dict(type='TaskView', size=task_size),
    dict(type='PairedRandomCrop', size=256),
]
test_pipeline = [dict(type='TaskView', size=task_size)]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='collate_paired'),
    dataset=dict(type=dataset_type, root='M3FD', ids='M3FD/train.txt', metainfo=metainfo,
                 pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='collate_paired'),
    dataset=dict(type=dataset_type, root='M3FD', ids='M3FD/test.txt', metainfo=metainfo,
                 pipeline=test_pipeline))
test_evaluator = [
    dict(type='FusionMetric'),
    dict(type='TaskMetric', keys=['mAP50', 'mAP75', 'mAP50-95']),
]
test_cfg = dict(type='TestLoop')
