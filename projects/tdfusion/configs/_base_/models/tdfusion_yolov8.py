# TDFusion with YOLOv8n (ultralytics, built from yolov8n.yaml, random init) as T.
_base_ = ['./tdfusion.py']
num_det_classes = 3
model = dict(
    task=dict(type='YOLOv8Task', num_classes=num_det_classes, in_channels=1),
    data_keys=dict(
        a='ir', b='vi', task_a='ir_task', task_b='vi_task',
        target=dict(bboxes='gt_bboxes', labels='gt_labels')),  # per-sample pixel boxes
)
