# Ablation V, second reading: I_f = w_a * I_a + w_b * I_b with the weights of a
# separate weight network W (an LPN with its own parameters), trained by the learnable
# fusion loss like any F (G still meta-learns the loss). Default reading (G's own
# weights): ablation5_weighted_sum_msrsdet_mini.py.
_base_ = ['./tdfusion_yolov8_msrsdet_mini.py']
model = dict(fusion_net=dict(_delete_=True, type='WeightedSumFusion',
                             weight_net=dict(type='TDFusionLPN')))
