"""Windows: stacked per-symbol feature windows as a `tf.data` pipeline, the splitters that cut them into
gapped, purged folds, and sample weights for overlapping labels.
"""
