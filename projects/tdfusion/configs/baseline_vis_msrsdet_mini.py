# Trivial baseline for the results table: fused image = VIS alone.
# The fusion rule is fixed (no parameters, no meta phase); only the task net T trains,
# with the same schedule, data and T optimiser as tdfusion_yolov8_msrsdet_mini.py.
_base_ = ['./tdfusion_yolov8_msrsdet_mini.py']
model = dict(
    fusion_net=dict(_delete_=True, type='SourceBaselineFusion', rule='b'),
    loss=dict(generator=dict(_delete_=True, type='ConstantWeights', weights=(0.5, 0.5))))
train_cfg = dict(meta_steps=0)
optim_wrapper = dict(fusion=None, generator=None)
