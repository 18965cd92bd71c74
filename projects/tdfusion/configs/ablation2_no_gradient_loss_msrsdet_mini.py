# Ablation II (paper Table 3): no gradient term, L_f = L_int(w) (alpha = 0).
_base_ = ['./tdfusion_yolov8_msrsdet_mini.py']
model = dict(loss=dict(alpha=0.0))
