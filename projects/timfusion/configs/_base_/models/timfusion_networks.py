# TIMFusion's released networks as model dicts, by name (notes §2.3, §2.5, §6).
# Every net follows the library's forward(a, b) -> fused: a = IR / MRI, b = VIS / the
# functional image's Y; grey [B, 1, H, W] in [0, 1]; any size (reflect-padded to
# multiples of 4 and cropped back). A genotype is a released name
# (projects.timfusion.timfusion.genotype_names()) or an explicit structure, e.g.
# dict(normal=['SPAattention_3', 'DilConv_3_2']) or dict(chain_fusion=[...], normal=[...]).
# The types register when 'projects.timfusion.timfusion' is imported: a config that
# builds one adds it to custom_imports (not set here: MMEngine replaces lists, and a
# runtime base owns that list).

# Stage 1 alone (Network_Fusion9_Meta, 994,917 parameters; linear output).
timfusion_stage1 = dict(type='TIMFusionStage1', genotype='fusion_M', channels=48,
                        cells=['fusion', 'chain'], swap_inputs=False)

# IVIF stage 2 alone (Network_Fusion9_3, 237,308 parameters): forward(x1, x2, f1),
# released as (VIS, IR, f1): the first branch (fusion_vis_proposed) takes VIS.
timfusion_ivif_stage2 = dict(type='TIMFusionRefineIVIF', first_genotype='fusion_vis_proposed',
                             second_genotype='fusion_ir_proposed', channels=48)

# IVIF, both stages (1,232,225 parameters), the released argument orders.
timfusion_ivif = dict(type='TIMFusionIVIF', stage1_genotype='fusion_M',
                      first_genotype='fusion_vis_proposed', second_genotype='fusion_ir_proposed',
                      channels=48, stage1_first='a', stage2_first='b', clamp=False)

# The "light" model (127,358 parameters): stage 1 with two Cell_Chain2 of fusion_light,
# released call order model_1(VIS, IR).
timfusion_light = dict(type='TIMFusionLight', genotype='fusion_light', channels=48,
                       cells=['chain', 'chain'], swap_inputs=True)

# Medical, both stages (Network_Fusion9_2 as stage 2; tanh output). The task presets
# (MEDICAL_TASKS) hold the released stage-2 orders and our reading of which branch
# takes which genotype (see the README); stage1_first is our choice (unknown).
timfusion_medical_ct = dict(type='TIMFusionMedical', task='ct', channels=48)
timfusion_medical_pet = dict(type='TIMFusionMedical', task='pet', channels=48)
timfusion_medical_spect = dict(type='TIMFusionMedical', task='spect', channels=48)

timfusion_networks = dict(
    stage1=timfusion_stage1,
    ivif_stage2=timfusion_ivif_stage2,
    ivif=timfusion_ivif,
    light=timfusion_light,
    medical_ct=timfusion_medical_ct,
    medical_pet=timfusion_medical_pet,
    medical_spect=timfusion_medical_spect,
)
