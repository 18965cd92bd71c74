# FMB segmentation (15 classes), layout root/{train,test}/{Infrared,Visible,Label}.
# TDFusion views: random 256x256 fusion crops, 300x400 task view.
_base_ = ['./msrs_seg.py']
dataset_type = 'FMBSegDataset'
task_size = (300, 400)
# Mask values 0..14 (0 = unlabeled/background).
metainfo = dict(classes=('unlabeled', 'Road', 'Sidewalk', 'Building', 'Traffic Light',
                         'Traffic Sign', 'Vegetation', 'Sky', 'Person', 'Car', 'Truck', 'Bus',
                         'Motorcycle', 'Bicycle', 'Pole'))
train_dataloader = dict(dataset=dict(
    type=dataset_type, root='FMB', metainfo=metainfo,
    pipeline=[dict(type='TaskView', size=task_size), dict(type='PairedRandomCrop', size=256)]))
test_dataloader = dict(dataset=dict(
    type=dataset_type, root='FMB', metainfo=metainfo,
    pipeline=[dict(type='TaskView', size=task_size)]))
