# Ablation I (paper Table 3) under the CPU recipe: fixed weights w_ir = w_vis = 1/2
# (ConstantWeights), so there is nothing to meta-learn and the meta phase is empty.
# Same warm-ups and the same number of F and T updates as
# tdfusion_yolov8_msrsdet_cpu.py: 300 + 3 x 60 fusion steps and 200 + 3 x 60 T steps.
_base_ = ['./tdfusion_yolov8_msrsdet_cpu.py']
model = dict(loss=dict(generator=dict(_delete_=True, type='ConstantWeights', weights=(0.5, 0.5))))
train_cfg = dict(meta_steps=0)
optim_wrapper = dict(generator=None)
