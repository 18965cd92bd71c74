# The public code's schedule (HaowenBai/TDFusion train.py): 40 epochs, M = 200,
# Adam lr 1e-4 with StepLR(step_size=10, gamma=0.1) on F, T and G (stepped per epoch).
# (The public outer update is a max-normalised step with the epoch's lr; select it
# with model.learner.outer_step='max_norm' and model.learner.outer_lr.)
_base_ = ['./tdfusion_paper.py']
train_cfg = dict(max_epochs=40)
param_scheduler = [dict(type='StepLR', step_size=10, gamma=0.1, by_epoch=True)]
