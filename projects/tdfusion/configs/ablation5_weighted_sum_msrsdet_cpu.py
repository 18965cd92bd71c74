# Ablation V (paper Table 3) under the CPU recipe: I_f = w_a * I_a + w_b * I_b with
# G's own weights (see ablation5_weighted_sum_msrsdet_mini.py). There is no F, so no
# fusion warm-up; the task warm-up and the 3 x (10 meta + 60 fusion) iterations are
# the method's (the fusion phase trains T only).
_base_ = ['./tdfusion_yolov8_msrsdet_cpu.py']
model = dict(fusion_net=dict(_delete_=True, type='WeightedSumFusion', weight_net=None))
train_cfg = dict(fusion_warmup_steps=0)
