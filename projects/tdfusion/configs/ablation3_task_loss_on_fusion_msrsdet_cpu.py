# Ablation III (paper Table 3) under the CPU recipe: F is also trained by the task
# loss in the fusion phase, F minimises L_f + lambda * L_t (lambda = 1).
_base_ = ['./tdfusion_yolov8_msrsdet_cpu.py']
model = dict(learner=dict(fusion_task_weight=1.0))
