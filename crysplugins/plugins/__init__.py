"""Built-in predictor plugins.  Each module implements ``register_predictors`` exactly as a third-party
plugin would; the host imports every module here and registers it under the module's name."""
