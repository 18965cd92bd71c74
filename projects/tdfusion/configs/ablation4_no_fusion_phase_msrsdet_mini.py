# Ablation IV (paper Table 3): no separate fusion-learning phase, "F is updated during
# G's outer update". Each iteration is a meta step in which F keeps its look-ahead
# step theta' (the inner SGD step on L_f with G's weights before the outer update),
# G takes its outer step, and T takes one step on the updated F's output. G gets the
# method's number of updates (M = 6 per epoch, as tdfusion_yolov8_msrsdet_mini.py);
# F and T get M updates per epoch instead of N: that is what having no fusion phase
# means. fusion_steps must be 0 (the loop refuses a fusion_steps it would ignore).
_base_ = ['./tdfusion_yolov8_msrsdet_mini.py']
train_cfg = dict(schedule='interleaved', fusion_steps=0)
