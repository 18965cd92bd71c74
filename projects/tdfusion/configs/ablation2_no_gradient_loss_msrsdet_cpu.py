# Ablation II (paper Table 3) under the CPU recipe: no gradient term, L_f = L_int(w)
# (alpha = 0); everything else as tdfusion_yolov8_msrsdet_cpu.py.
_base_ = ['./tdfusion_yolov8_msrsdet_cpu.py']
model = dict(loss=dict(alpha=0.0))
