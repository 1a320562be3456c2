"""Evaluation of test predictions: metrics with block-bootstrap intervals, baselines on the same windows,
the power of the test (minimum detectable IC), the backtest, and the HTML report.
"""
