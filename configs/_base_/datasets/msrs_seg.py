# MSRS segmentation (9 classes), layout root/{train,test}/{ir,vi,Segmentation_labels}
# (PairedSegDataset's default folders). TDFusion views: random 256x256 fusion crops,
# 240x320 task view.
dataset_type = 'PairedSegDataset'
# Mask values 0..8 (MSRS README: 0 unlabelled/background, 1 car, ..., 8 bump).
metainfo = dict(classes=('background', 'car', 'person', 'bike', 'curve', 'car_stop',
                         'guardrail', 'color_cone', 'bump'))
seg_root = 'MSRS'
crop_size = 256
task_size = (240, 320)
train_pipeline = [
    dict(type='TaskView', size=task_size),
    dict(type='PairedRandomCrop', size=crop_size),
]
test_pipeline = [dict(type='TaskView', size=task_size)]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='collate_paired'),
    dataset=dict(type=dataset_type, root=seg_root, split='train', metainfo=metainfo,
                 pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='collate_paired'),
    dataset=dict(type=dataset_type, root=seg_root, split='test', metainfo=metainfo,
                 pipeline=test_pipeline))
test_evaluator = [
    dict(type='FusionMetric'),
    dict(type='TaskMetric', keys=['mIoU', 'mAcc', 'aAcc']),
]
test_cfg = dict(type='TestLoop')
