# Ablation I (paper Table 3): no learnable loss; fixed weights w_ir = w_vis = 1/2
# (ConstantWeights). G has no parameters, so there is nothing to meta-learn: no meta
# phase, F is trained by the hand-set L_f and T by L_t.
_base_ = ['./tdfusion_yolov8_msrsdet_mini.py']
model = dict(loss=dict(generator=dict(_delete_=True, type='ConstantWeights', weights=(0.5, 0.5))))
train_cfg = dict(meta_steps=0)
optim_wrapper = dict(generator=None)
