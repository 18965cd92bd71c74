# Mini multi-task run on ../shared/data/msrs_det: one task loss from two task nets
# on the same fused images, SegFormer on weak masks from the boxes (seg) and YOLOv8n
# on the boxes (det), sized for 2 CPU cores like the two single-task mini configs
# (2 epochs x (6 meta + 24 fusion steps); both T nets train, so each step costs
# about the two single-task steps together).
# Fixed weights: L_t = 1.0 * L_seg + 1.0 * L_det. Learned (homoscedastic
# uncertainty, Kendall et al. 2018): --cfg-options model.task.learn_weights=True
# (the weights are then the initial ones; see learnable_fusion_loss/tasks/multi.py).
_base_ = [
    './_base_/models/tdfusion_yolov8.py',
    '../../../configs/_base_/datasets/msrs_multitask_mini.py',
    './_base_/schedules/tdfusion_mini.py',
    './_base_/default_runtime.py',
]
model = dict(
    task=dict(
        _delete_=True,
        type='MultiTask',
        tasks=dict(
            seg=dict(type='SegFormerTask', num_classes=4, in_channels=1,
                     class_names={{_base_.seg_classes}}, seed=0),
            det=dict(type='YOLOv8Task', num_classes=3, in_channels=1,
                     class_names={{_base_.metainfo.classes}}, seed=0)),
        weights=dict(seg=1.0, det=1.0),
        learn_weights=False),
    # The sources and task views as in the detection base; one target per member.
    data_keys=dict(target=dict(
        _delete_=True,
        seg='gt_sem_seg',
        det=dict(bboxes='gt_bboxes', labels='gt_labels'))),
)
# optim_wrapper.task (Adam, lr 1e-3, from the mini schedule) is one optimiser over
# both nets and the log-variances, shared by the members' steps (and checkpointed).
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=20))
custom_hooks = [
    dict(type='TrainingStateHook'),
    dict(type='FusionVisualizationHook', interval=20, max_samples=2),
    dict(type='TaskMetricHook'),
]
