# Ablation V (paper Table 3): the fusion method is replaced by a discriminative one,
# the fused image is the weighted sum I_f = w_a * I_a + w_b * I_b. The paper does not
# say where w comes from; this config takes G's own meta-learned weights (w_a, w_b
# name G's outputs everywhere else in the paper): there is no F, G is trained by the
# hypergradient (here the direct derivative of L_t through the sum) and the fusion
# phase trains T only. The other reading, a separate weight network trained by L_f:
# ablation5_weighted_sum_weightnet_msrsdet_mini.py.
_base_ = ['./tdfusion_yolov8_msrsdet_mini.py']
model = dict(fusion_net=dict(_delete_=True, type='WeightedSumFusion', weight_net=None))
