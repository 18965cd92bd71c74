# A CPU-scale schedule (2 cores, minutes): fusion warm-up, task warm-up, then 3 epochs
# of Algorithm 1 with M = 10 meta and N = 60 fusion steps (Adam lr 1e-3 for F and T:
# few steps, so larger than the paper's 1e-4; G keeps 1e-3 as in the mini configs).
# The two warm-ups are this library's options, not the paper's (see the loop's docs):
#   fusion_warmup_steps: F alone on the fixed 1/2-1/2 loss, so that the first meta
#     step starts from an F whose output is an image, not noise;
#   task_warmup_steps: T alone on both sources' task views (one step on each), so
#     that the task loss that trains G comes from a detector that has learnt something.
_base_ = ['./tdfusion_paper.py']
train_cfg = dict(
    max_epochs=3, meta_steps=10, fusion_steps=60,
    fusion_warmup_steps=300, task_warmup_steps=200, task_warmup_source='both')
optim_wrapper = dict(
    fusion=dict(optimizer=dict(lr=1e-3)),
    generator=dict(optimizer=dict(lr=1e-3)),
    task=dict(optimizer=dict(lr=1e-3)),
)
