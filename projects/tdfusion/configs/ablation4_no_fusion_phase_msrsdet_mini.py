# Ablation IV (paper Table 3): no separate fusion phase. Each iteration is a meta
# step (inner step, T', outer step of G) directly followed by the fusion step of F and
# T on the same meta-train batch; an epoch is M such iterations. To keep the number of
# F/T updates of the mini run, M = 24 here.
_base_ = ['./tdfusion_yolov8_msrsdet_mini.py']
train_cfg = dict(schedule='interleaved', meta_steps=24)
