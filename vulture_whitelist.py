"""Names vulture reports as unused that a framework, a protocol or a public contract uses.

vulture reads our packages only (not the tests, not the libraries that call back into us),
so it cannot see these uses. Each group says who uses its names; anything else vulture
reports is dead code and is removed, not listed here. ``make lint`` runs vulture with this
file (``[tool.vulture]`` in pyproject.toml).
"""

# ruff: noqa: F821, B018
# mypy: ignore-errors

# --- click: commands registered by their decorators (``churn ...``) -----------------------
keys_create, keys_list, keys_revoke  # churn api keys
batch_serve, batch_run, data_generate, schemas_export  # churn batch / data / schemas
bench_stream, bench_api, bench_dashboard, bench_batch, bench_batch_curve, bench_faults  # churn bench
bench_gbm_cv, bench_models_cv, bench_score
stack_up, stack_down, stack_status, demo  # churn stack, churn demo
dlq_replay, dashboard, consume  # churn dlq / dashboard / consume
infer_cmd, check_cmd, schema_cmd  # churn profile
_.get_metavar  # click.ParamType hook: the metavar shown in --help

# --- Faust: agents, timers and tasks registered by their decorators; Faust/aiokafka settings --
score_customers, watch_model_updates, follow_lag, publish_drift
_.shutdown_timeout  # read by Faust's consumer thread on stop (no public setting)

# --- asyncio / aiokafka / httptools protocols: called by the library ------------------------
_.on_partitions_revoked, _.on_partitions_assigned  # aiokafka ConsumerRebalanceListener
_.connection_made, _.data_received, _.connection_lost  # asyncio.Protocol (bench api load generator)
_.on_message_complete  # httptools parser callback
_.enqueue  # logging.handlers.QueueHandler hook (batch cycle child process)

# --- Dash / Flask: callbacks registered by decorators, request-scoped and app attributes -----
_live, _models, _quality  # dashboard tab callbacks
_.churn_t0  # flask.g: a request's start, read by the Server-Timing hook
_.models_reader, models_reader  # dashboard app attribute, read by the bench and tests
_.get_id  # Flask-Login: the session id a logged-in DashboardUser is stored under

# --- pydantic: model fields (the event, HTTP and profile contracts) and validators ----------
schema_version, value_at_risk_usd, psi_threshold, alert, drifted_features
mean_ms, p50_ms, p90_ms, p99_ms, max_ms, uptime_s, responses_by_status, value_model_version
last_reload_error, auth_failures_by_reason, model_refusals, announcements_refused, format_version, bad_records, excluded
_._to_utc, _._value_iff_fill, _._consistent, _._cross_references
SCORE_FIELDS  # the score record's field names, checked against ScoreEvent by the tests

# --- scikit-learn's estimator contract: public API and learned attributes -------------------
deep  # get_params(deep=...)
_.set_params, _.fit_transform, _.inverse_transform
_.validation_loss_, _.n_estimators_, _.feature_importances_, _.expected_value_
_.k_candidates_, _.n_clusters_, _.explained_variance_ratio_, _.singular_values_
_.oob_decision_function_, _.oob_score_, _.oob_prediction_, _.n_iter_, _.best_epoch_
_.last_unknown_counts_, _.feature_index_, _.n_leaves_, _.depth_
# Zoo models found by class name (scratch_models/registry.py: MODEL_CLASSES = BaseModel.registry).
KMeansClassifier, AgglomerativeClassifier, PCAClassifier, SVMPCAClassifier, RandomForestPCAClassifier

# --- documented public attributes and methods read by tests and operators ------------------
_.events_seen  # DriftMonitor: events in the current PSI window
_.to_yaml  # DatasetProfile: the profile as a file (round trip)
