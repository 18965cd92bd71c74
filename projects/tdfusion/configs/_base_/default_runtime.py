# The library's runtime plus this project's package (ReFusionNet, TDFusionLPN, the
# fusion rules of the ablations and baselines), shared by every TDFusion config.
# custom_imports replaces the library's list (MMEngine does not merge lists), so it
# repeats it and adds the package last.
_base_ = ['../../../../configs/_base_/default_runtime.py']
custom_imports = dict(
    imports=[
        'learnable_fusion_loss.generators',
        'learnable_fusion_loss.losses',
        'learnable_fusion_loss.tasks',
        'learnable_fusion_loss.tasks.segformer',
        'learnable_fusion_loss.tasks.yolov8',
        'learnable_fusion_loss.datasets',
        'learnable_fusion_loss.metrics',
        'learnable_fusion_loss.engine',
        'projects.tdfusion.tdfusion',
    ],
    allow_failed_imports=False)
