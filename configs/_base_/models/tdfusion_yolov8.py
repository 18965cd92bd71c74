# TDFusion with YOLOv8n as the task net T: F = ReFusion, G = the Restormer LPN,
# L_f = L_int(w) + alpha * L_grad (alpha = 1), meta steps with a differentiable
# SGD inner step (eta = F's current lr) and an Adam outer step on G.
num_det_classes = 3
model = dict(
    type='MetaFusionModel',
    fusion_net=dict(type='ReFusionNet'),
    loss=dict(
        type='LearnableFusionLoss',
        generator=dict(type='TDFusionLPN'),
        alpha=1.0,
        intensity_form='paper',
        gradient_form='magnitude'),
    task=dict(type='YOLOv8Task', num_classes=num_det_classes, in_channels=1),
    learner=dict(
        outer_step='adam', inner_backend='torch.func', inner_optimizer='sgd',
        fusion_task_weight=0.0),
    source_names=('ir', 'vis'),
    data_keys=dict(
        a='ir', b='vi', task_a='ir_task', task_b='vi_task',
        target=['batch_idx', 'cls', 'bboxes']),
)
