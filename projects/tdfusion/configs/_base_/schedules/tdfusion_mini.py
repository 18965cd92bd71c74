# A CPU-sized schedule for the *_mini configs: 2 epochs of M = 6 meta steps and
# N = 24 fusion steps (Adam lr 1e-3: few steps, so a larger step than the paper's).
_base_ = ['./tdfusion_paper.py']
train_cfg = dict(max_epochs=2, meta_steps=6, fusion_steps=24)
optim_wrapper = dict(
    fusion=dict(optimizer=dict(lr=1e-3)),
    generator=dict(optimizer=dict(lr=1e-3)),
    task=dict(optimizer=dict(lr=1e-3)),
)
