"""Evaluation protocols: how a trained network is scored as the papers score it (the Non-local
paper's multi-clip, multi-crop video test; next COCO AP and dataset-level mIoU)."""

from nlgc.evaluation.video import fully_convolutional_scores, multi_view_scores, view_scores

__all__ = ["fully_convolutional_scores", "multi_view_scores", "view_scores"]
