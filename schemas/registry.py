"""The MLflow contract: registered model names, aliases, and the paths of what a cycle logs.

The batch job writes these names and paths; the worker, the prediction API and the
dashboard read them. One spelling here, imported by all: a renamed model or a moved
report is then one edit, not a hunt through four packages. Pure constants, no I/O.
"""

from __future__ import annotations

# ----------------------------------------------------------- registered models
#: Registered name of the churn classifiers (the scores and alerts of the stream).
CLASSIFIER_NAME = "churn-classifier"
#: Registered name of the customer-value regressors (``predicted_value_usd`` and value at risk).
REGRESSOR_NAME = "sales-regressor"
#: (Telco's names; another data set's are ``<dataset>-churn-classifier``, ...:
#: :meth:`schemas.namespace.Namespace.registered_models`.)

# --------------------------------------------------------------------- aliases
#: Alias of the version in service: the worker scores with it, the API serves it.
CHAMPION = "champion"
#: Alias of a registered version that did not beat the champion (shadow-scored when followed).
CHALLENGER = "challenger"

# ------------------------------------------------------- artifacts of a run
#: Folder of a model run's artifacts that holds its scoring pipeline.
MODEL_DIR = "model"
#: Where a cycle logs a model's scoring pipeline in its MLflow run (also a model version's
#: ``artifact_path`` tag).
ARTIFACT_PATH = f"{MODEL_DIR}/pipeline.npz"

#: Evaluation curves of a classifier run (JSON), drawn by the dashboard.
ROC_CURVE_PATH = "eval/roc_curve.json"
PR_CURVE_PATH = "eval/pr_curve.json"
CONFUSION_MATRIX_PATH = "eval/confusion_matrix.json"

# --------------------------------------------------- reports of a cycle run
#: The data-quality gate's report on the cycle's parent run (JSON, read by the dashboard).
DQ_REPORT_PATH = "dq_report.json"
#: The same report as Markdown, for people.
DQ_REPORT_MARKDOWN_PATH = "dq_report.md"
#: The cycle's summary (registered and promoted versions) on its parent run.
CYCLE_SUMMARY_PATH = "cycle_summary.json"
#: The cycle's model comparison on its parent run (Markdown).
COMPARISON_REPORT_PATH = "comparison_report.md"
