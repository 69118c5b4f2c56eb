"""Evaluation of scored rows over a whole table: every figure from one aggregation over
equal-count score bins, bootstrap intervals without another pass, and slices.

How it works, for a binary classifier:
1. Bin edges from a sketch of the scores: a bounded random sample of them (at most
   `SAMPLE_ROWS`, whatever the table's size) cut into `FINE_BINS` bins of equal count. The
   model's thresholds (as the next double above each: a row is positive when its score is
   above the threshold) and the calibration deciles are edges too, so the counts at a
   threshold and the calibration table are exact.
2. One aggregation (grouping sets): per fine bin the rows, positives, the sums of the
   probability, log loss and squared error by label; per value of each slice column and
   coarse bin the same. Only these tables (a few thousand rows) reach the driver, as Arrow.
3. On the driver: ROC / PR AUC by trapezoids over the bins (scores within a bin count as
   tied) with the worst-case error of that binning beside each, log loss, Brier score,
   the confusion matrix at each threshold, the F1-best threshold, calibration and the
   score distribution per class.

Bootstrap: a Poisson bootstrap gives each row a Poisson(1) weight per replicate. The sum
of the weights of the rows of one cell (bin x label) is then Poisson(rows of the cell),
independently across cells: a replicate's bin counts are drawn on the driver from the
counts of the aggregation (seeded), with the same distribution as weights hashed from
each row's key, and without a pass over rows per replicate (hashed row weights cost far
more: benchmarks/RESULTS.md, "Evaluation over a whole scored table"). Sums within a
cell (log loss, squared errors) scale with the drawn weight at the cell's mean: fine
bins keep their spread small.
Paired replicates of two models (promotion) draw on the joint cells of both models' bins.
"""
