# TDFusion on MSRS with the public code's recipe (HaowenBai/TDFusion train.py):
# 40 epochs, StepLR(10, 0.1) on every optimiser, batch 1 doubled by the source
# swap ("Switch"), the max-normalised outer step with the epoch's F lr (outer_lr_from_fusion),
# the squared-weight intensity term and the per-axis gradient term; T's Adam state
# keeps its T' steps (keep_task_optimizer_state; the public code reloads T's weights only).
_base_ = [
    './_base_/models/tdfusion_segformer.py',
    '../../../configs/_base_/datasets/msrs_seg.py',
    './_base_/schedules/tdfusion_official.py',
    './_base_/default_runtime.py',
]
model = dict(
    # the public SegFormer takes the fused image as it is (1 channel in [0, 1], no
    # (x - mean) / std; README 'The public recipe, line by line')
    task=dict(num_classes=9, class_names={{_base_.metainfo.classes}}, mean=[0.0], std=[1.0]),
    loss=dict(intensity_form='public', gradient_form='public'),
    learner=dict(outer_step='max_norm', outer_lr=1e-4, outer_lr_from_fusion=True,
                 keep_task_optimizer_state=True))
train_dataloader = dict(batch_size=1, collate_fn=dict(type='collate_paired', swap_modalities=True))
