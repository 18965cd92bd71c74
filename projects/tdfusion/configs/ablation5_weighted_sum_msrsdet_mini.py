# Ablation V (paper Table 3): the fused image is a weighted sum of the sources,
# F(a, b) = w_a * a + w_b * b, with the weights of a trainable weight network (an LPN
# with its own parameters), trained by the learnable fusion loss like any F.
_base_ = ['./tdfusion_yolov8_msrsdet_mini.py']
model = dict(fusion_net=dict(_delete_=True, type='WeightedSumFusion',
                             weight_net=dict(type='TDFusionLPN')))
