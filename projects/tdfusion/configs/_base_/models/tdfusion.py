# The TDFusion method, shared by every task: F = ReFusion, G = the Restormer LPN,
# L_f = L_int(w) + alpha * L_grad (alpha = 1, the paper's forms), meta steps with a
# differentiable SGD inner step (eta = F's current lr) and an Adam outer step on G.
# hypergradient='forward' gives the same hypergradient as the unrolled torch.func
# step (tests/test_meta.py, tests/test_networks.py) at ~half the peak memory;
# 'unrolled' differentiates through model.learner.inner_backend instead (which is
# refused with 'forward', where it would do nothing).
# A task config adds model.task and model.data_keys.
model = dict(
    type='MetaFusionModel',
    fusion_net=dict(type='ReFusionNet'),
    loss=dict(
        type='LearnableFusionLoss',
        generator=dict(type='TDFusionLPN'),
        alpha=1.0,
        intensity_form='paper',
        gradient_form='paper'),
    learner=dict(
        outer_step='adam', inner_optimizer='sgd',
        hypergradient='forward', fusion_task_weight=0.0),
    source_names=('ir', 'vis'),
)
