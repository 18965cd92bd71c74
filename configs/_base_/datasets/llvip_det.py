# LLVIP detection (person), layout root/{infrared,visible}/{train,test}, root/Annotations.
# TDFusion views: random 256x256 fusion crops, 256x320 task view.
_base_ = ['./m3fd_det.py']
dataset_type = 'LLVIPDataset'
task_size = (256, 320)
metainfo = dict(classes=('person', ))
train_dataloader = dict(dataset=dict(
    _delete_=True, type=dataset_type, root='LLVIP', split='train', metainfo=metainfo,
    pipeline=[dict(type='TaskView', size=task_size), dict(type='PairedRandomCrop', size=256)]))
test_dataloader = dict(dataset=dict(
    _delete_=True, type=dataset_type, root='LLVIP', split='test', metainfo=metainfo,
    pipeline=[dict(type='TaskView', size=task_size)]))
