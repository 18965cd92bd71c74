# Ablation IV (paper Table 3) under the CPU recipe: no separate fusion phase; each of
# the M = 10 iterations per epoch is a meta step in which F keeps its look-ahead step
# and T steps on the updated F (see ablation4_no_fusion_phase_msrsdet_mini.py). Same
# warm-ups and the same number of G updates as the method (3 x 10).
_base_ = ['./tdfusion_yolov8_msrsdet_cpu.py']
train_cfg = dict(schedule='interleaved', fusion_steps=0)
