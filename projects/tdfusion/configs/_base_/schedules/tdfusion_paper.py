# The paper's schedule (TDFusion, CVPR 2025, Sec. 4.1): L = 50 epochs, each with
# M = 200 meta steps (inner + outer) then one pass of fusion steps over the
# training set; Adam, lr 1e-4 for F, T and G; constant learning rate.
train_cfg = dict(
    type='MetaFusionTrainLoop', max_epochs=50, meta_steps=200, fusion_steps=None,
    schedule='phased')
optim_wrapper = dict(
    constructor='MultiModuleOptimWrapperConstructor',
    fusion=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, weight_decay=0)),
    generator=dict(
        type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, weight_decay=0, eps=1e-10)),
    task=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, weight_decay=0)),
)
