# TDFusion with SegFormer (mmseg, MiT-B0 layout, random init) as the task net T.
num_seg_classes = 9
model = dict(
    type='MetaFusionModel',
    fusion_net=dict(type='ReFusionNet'),
    loss=dict(
        type='LearnableFusionLoss',
        generator=dict(type='TDFusionLPN'),
        alpha=1.0,
        intensity_form='paper',
        gradient_form='magnitude'),
    task=dict(type='SegFormerTask', num_classes=num_seg_classes, in_channels=1),
    # The adapter builds an mmseg model config with unscoped type names.
    task_scope='mmseg',
    learner=dict(
        outer_step='adam', inner_backend='torch.func', inner_optimizer='sgd',
        fusion_task_weight=0.0),
    source_names=('ir', 'vis'),
    data_keys=dict(a='ir', b='vi', task_a='ir_task', task_b='vi_task', target='gt_sem_seg'),
)
