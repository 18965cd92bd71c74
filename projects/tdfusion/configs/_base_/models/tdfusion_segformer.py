# TDFusion with SegFormer (mmseg, MiT-B0 layout, random init) as the task net T.
_base_ = ['./tdfusion.py']
num_seg_classes = 9
model = dict(
    task=dict(type='SegFormerTask', num_classes=num_seg_classes, in_channels=1),
    # The adapter builds an mmseg model config with unscoped type names.
    task_scope='mmseg',
    data_keys=dict(a='source_a', b='source_b', task_a='source_a_task', task_b='source_b_task',
                   target='gt_sem_seg'),
)
