# TDFusion with YOLOv8n (ultralytics, built from yolov8n.yaml, random init) as T.
_base_ = ['./tdfusion.py']
num_det_classes = 3
model = dict(
    task=dict(type='YOLOv8Task', num_classes=num_det_classes, in_channels=1),
    data_keys=dict(
        a='source_a', b='source_b', task_a='source_a_task', task_b='source_b_task',
        target=dict(bboxes='gt_bboxes', labels='gt_labels')),  # per-sample pixel boxes
)
